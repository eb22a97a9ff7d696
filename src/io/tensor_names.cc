#include "io/tensor_names.h"

#include <cstdlib>
#include <vector>

namespace elm {
namespace {

struct Pair {
  const char* hf;  // suffix after "transformer.layers.{i}." (or the full name, model-level)
  const char* gguf;
};

constexpr Pair kModel[] = {
    {"transformer.token_embeddings.weight", "token_embd.weight"},
    {"transformer.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

// proj_1 is handled apart (split with GLU).
constexpr Pair kLayer[] = {
    {"attn_norm.weight", "attn_norm.weight"},       {"attn.qkv_proj.weight", "attn_qkv.weight"},
    {"attn.q_norm.weight", "attn_q_norm.weight"},   {"attn.k_norm.weight", "attn_k_norm.weight"},
    {"attn.out_proj.weight", "attn_output.weight"}, {"ffn_norm.weight", "ffn_norm.weight"},
    {"ffn.proj_2.weight", "ffn_down.weight"},
};

constexpr const char* kHfLayer = "transformer.layers.";
constexpr const char* kGgufLayer = "blk.";

// Splits "<prefix>{i}.<rest>" into i and rest; false if `name` does not have that form.
bool SplitLayer(const std::string& name, const std::string& prefix, int* layer, std::string* rest) {
  if (name.compare(0, prefix.size(), prefix) != 0) return false;
  size_t i = prefix.size(), j = i;
  while (j < name.size() && name[j] >= '0' && name[j] <= '9') ++j;
  if (j == i || j - i > 6 || j >= name.size() || name[j] != '.') return false;
  if (name[i] == '0' && j - i > 1) return false;  // no leading zeros: names must round-trip
  *layer = std::atoi(name.substr(i, j - i).c_str());
  *rest = name.substr(j + 1);
  return true;
}

}  // namespace

std::vector<GgufNamePart> HfToGguf(const std::string& hf_name, bool ffn_with_glu) {
  for (const auto& p : kModel)
    if (hf_name == p.hf) return {{p.gguf, RowPart::kAll}};
  int layer;
  std::string rest;
  if (!SplitLayer(hf_name, kHfLayer, &layer, &rest)) return {};
  const std::string blk = kGgufLayer + std::to_string(layer) + ".";
  if (rest == "ffn.proj_1.weight") {
    if (!ffn_with_glu) return {{blk + "ffn_up.weight", RowPart::kAll}};
    return {{blk + "ffn_gate.weight", RowPart::kFirstHalf},
            {blk + "ffn_up.weight", RowPart::kSecondHalf}};
  }
  for (const auto& p : kLayer)
    if (rest == p.hf) return {{blk + p.gguf, RowPart::kAll}};
  return {};
}

}  // namespace elm
