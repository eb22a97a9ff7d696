// llama-quantize's file types ("presets": Q4_K_M, Q5_K_S, IQ4_XS, ...) and the per-tensor type
// rules it applies to an OpenELM GGUF (llama.cpp's llama_tensor_get_type, for the tensor names
// OpenELM has: token_embd, attn_qkv, attn_output, ffn_gate, ffn_up, ffn_down, output). A preset
// names a base type; some tensors get more bits: the (tied) token embedding takes the output
// rule (Q6_K), the fused QKV counts as attn_v, and ffn_down / attn_output follow the preset
// (use_more_bits picks layers for the _M mixes). docs/formats.md lists the rules.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/dtype.h"

namespace elm {

struct QuantPreset {
  const char* name;    // llama-quantize's name, e.g. "Q4_K_M"
  uint32_t file_type;  // general.file_type (llama_ftype)
  DType base;          // the type of the tensors no rule changes
};

// Every preset elm writes, in llama-quantize's order.
const std::vector<QuantPreset>& QuantPresets();
// A preset by name, any case; "q3_k", "q4_k", "q5_k" are llama-quantize's aliases of the _M
// mixes. nullopt for other names.
std::optional<QuantPreset> FindQuantPreset(std::string_view name);
// "q2_k, q2_k_s, q3_k_s, ..." (for messages).
std::string QuantPresetList();

// What the rules need to know about the model.
struct QuantMixModel {
  int n_layer = 0;
  int n_gqa = 1;  // query heads per KV head in layer 0 (llama.cpp's hparams.n_gqa())
  bool tied_embeddings = true;
};

struct QuantMixOptions {
  bool pure = false;         // llama-quantize --pure: every matrix in the base type
  bool has_imatrix = false;  // some rules differ with an importance matrix
};

// The type llama-quantize gives the 2-D weight `gguf_name` (e.g. "blk.3.ffn_down.weight") whose
// rows have `ne0` values, including its fallback when ne0 is not a multiple of the chosen type's
// block (K-quants to Q4_0/Q5_0/Q5_1/Q8_0, IQ4_XS to IQ4_NL, then F16). `fell_back` (optional)
// tells whether the fallback applied.
DType QuantMixType(const QuantPreset& preset, const std::string& gguf_name, int64_t ne0,
                   const QuantMixModel& model, const QuantMixOptions& opt,
                   bool* fell_back = nullptr);

// llama-quantize's tensor order: tensors outside blocks first, then by block number, each group
// by name (llama.cpp's weight_name_comparer).
bool LlamaQuantizeOrder(const std::string& a, const std::string& b);

}  // namespace elm
