#include "io/quant_mix.h"

#include <cctype>
#include <cstdio>

namespace elm {

namespace {

// llama_ftype values (llama.h).
enum : uint32_t {
  kFtQ4_1 = 3,
  kFtQ5_0 = 8,
  kFtQ5_1 = 9,
  kFtQ2_K = 10,
  kFtQ3_K_S = 11,
  kFtQ3_K_M = 12,
  kFtQ3_K_L = 13,
  kFtQ4_K_S = 14,
  kFtQ4_K_M = 15,
  kFtQ5_K_S = 16,
  kFtQ5_K_M = 17,
  kFtQ6_K = 18,
  kFtQ2_K_S = 21,
  kFtIQ4_NL = 25,
  kFtIQ4_XS = 30,
};

std::string Upper(std::string_view s) {
  std::string u(s);
  for (char& c : u) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return u;
}

// The category of a weight by its GGUF name (llama.cpp's tensor_get_category, OpenELM's names).
enum class Category {
  kTokenEmbd,
  kOutput,
  kAttnV,
  kAttnOutput,
  kFfnUp,
  kFfnGate,
  kFfnDown,
  kOther
};

Category CategoryOf(const std::string& name) {
  if (name == "output.weight") return Category::kOutput;
  if (name == "token_embd.weight") return Category::kTokenEmbd;
  // The fused QKV counts as attn_v (category_is_attn_v).
  if (name.find("attn_qkv.weight") != std::string::npos ||
      name.find("attn_v.weight") != std::string::npos)
    return Category::kAttnV;
  if (name.find("attn_output.weight") != std::string::npos) return Category::kAttnOutput;
  if (name.find("ffn_up") != std::string::npos) return Category::kFfnUp;
  if (name.find("ffn_gate") != std::string::npos) return Category::kFfnGate;
  if (name.find("ffn_down") != std::string::npos) return Category::kFfnDown;
  return Category::kOther;
}

// The block number of "blk.N...." names, -1 for the others.
int LayerOf(const std::string& name) {
  int layer = -1;
  if (std::sscanf(name.c_str(), "blk.%d.", &layer) != 1) return -1;
  return layer;
}

bool UseMoreBits(int i_layer, int n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

// llama_tensor_get_type_impl for the presets elm writes. OpenELM has one attn_qkv and one
// ffn_down per block, in block order, so llama.cpp's running counters (i_attention_wv,
// i_ffn_down) are the block number and n_attention_wv = n_ffn_down = n_layer.
DType RuleType(uint32_t ft, DType type, Category cat, int layer, int64_t ne0,
               const QuantMixModel& m, bool has_imatrix) {
  const int n_layer = m.n_layer;
  if (cat == Category::kOutput || (m.tied_embeddings && cat == Category::kTokenEmbd)) {
    if (ne0 % static_cast<int64_t>(DTypeBlock(type)) != 0) return DType::kQ8_0;
    return type != DType::kQ8_0 ? DType::kQ6_K : type;
  }
  if (cat == Category::kTokenEmbd) return type;
  if (cat == Category::kAttnV) {
    if (ft == kFtQ2_K) return m.n_gqa >= 4 ? DType::kQ4_K : DType::kQ3_K;
    if (ft == kFtQ2_K_S && m.n_gqa >= 4) return DType::kQ4_K;
    if (ft == kFtQ3_K_M) return layer < 2 ? DType::kQ5_K : DType::kQ4_K;
    if (ft == kFtQ3_K_L) return DType::kQ5_K;
    if ((ft == kFtIQ4_NL || ft == kFtIQ4_XS) && m.n_gqa >= 4) return DType::kQ5_K;
    if ((ft == kFtQ4_K_M || ft == kFtQ5_K_M) && UseMoreBits(layer, n_layer)) return DType::kQ6_K;
    if (ft == kFtQ4_K_S && layer < 4) return DType::kQ5_K;
    return type;
  }
  if (cat == Category::kFfnDown) {
    if (ft == kFtQ2_K) return DType::kQ3_K;
    if (ft == kFtQ2_K_S) return layer < n_layer / 8 ? DType::kQ4_K : type;
    if (ft == kFtQ3_K_M) return layer < n_layer / 16 ? DType::kQ5_K : DType::kQ4_K;
    if (ft == kFtQ3_K_L) return DType::kQ5_K;
    if (ft == kFtQ4_K_M) return UseMoreBits(layer, n_layer) ? DType::kQ6_K : type;
    if (layer < n_layer / 8 && (ft == kFtIQ4_NL || ft == kFtIQ4_XS) && !has_imatrix)
      return DType::kQ5_K;
    if (ft == kFtQ5_K_M && UseMoreBits(layer, n_layer)) return DType::kQ6_K;
    if (ft == kFtQ4_K_S && layer < n_layer / 8) return DType::kQ5_K;
    return type;
  }
  if (cat == Category::kAttnOutput) {
    if (ft == kFtQ2_K) return DType::kQ3_K;
    if (ft == kFtQ3_K_M) return DType::kQ4_K;
    if (ft == kFtQ3_K_L) return DType::kQ5_K;
    return type;
  }
  return type;
}

// llama.cpp's fallback for rows that do not fill the chosen type's blocks.
DType Fallback(DType t, int64_t ne0, bool* fell_back) {
  if (ne0 % static_cast<int64_t>(DTypeBlock(t)) == 0) return t;
  if (fell_back) *fell_back = true;
  DType f = DType::kF16;
  switch (t) {
    case DType::kIQ4_XS:
      f = DType::kIQ4_NL;
      break;
    case DType::kQ2_K:
    case DType::kQ3_K:
      f = DType::kQ4_0;
      break;
    case DType::kQ4_K:
      f = DType::kQ5_0;
      break;
    case DType::kQ5_K:
      f = DType::kQ5_1;
      break;
    case DType::kQ6_K:
      f = DType::kQ8_0;
      break;
    default:
      break;
  }
  return ne0 % static_cast<int64_t>(DTypeBlock(f)) == 0 ? f : DType::kF16;
}

}  // namespace

const std::vector<QuantPreset>& QuantPresets() {
  static const std::vector<QuantPreset> kPresets = {
      {"Q4_1", kFtQ4_1, DType::kQ4_1},       {"Q5_0", kFtQ5_0, DType::kQ5_0},
      {"Q5_1", kFtQ5_1, DType::kQ5_1},       {"IQ4_NL", kFtIQ4_NL, DType::kIQ4_NL},
      {"IQ4_XS", kFtIQ4_XS, DType::kIQ4_XS}, {"Q2_K", kFtQ2_K, DType::kQ2_K},
      {"Q2_K_S", kFtQ2_K_S, DType::kQ2_K},   {"Q3_K_S", kFtQ3_K_S, DType::kQ3_K},
      {"Q3_K_M", kFtQ3_K_M, DType::kQ3_K},   {"Q3_K_L", kFtQ3_K_L, DType::kQ3_K},
      {"Q4_K_S", kFtQ4_K_S, DType::kQ4_K},   {"Q4_K_M", kFtQ4_K_M, DType::kQ4_K},
      {"Q5_K_S", kFtQ5_K_S, DType::kQ5_K},   {"Q5_K_M", kFtQ5_K_M, DType::kQ5_K},
      {"Q6_K", kFtQ6_K, DType::kQ6_K},
  };
  return kPresets;
}

std::optional<QuantPreset> FindQuantPreset(std::string_view name) {
  std::string up = Upper(name);
  if (up == "Q3_K" || up == "Q4_K" || up == "Q5_K") up += "_M";
  for (const QuantPreset& p : QuantPresets())
    if (up == p.name) return p;
  return std::nullopt;
}

std::string QuantPresetList() {
  std::string s;
  for (const QuantPreset& p : QuantPresets()) {
    if (!s.empty()) s += ", ";
    for (const char* c = p.name; *c; ++c)
      s.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(*c))));
  }
  return s;
}

DType QuantMixType(const QuantPreset& preset, const std::string& gguf_name, int64_t ne0,
                   const QuantMixModel& model, const QuantMixOptions& opt, bool* fell_back) {
  if (fell_back) *fell_back = false;
  DType t = preset.base;
  if (!opt.pure)
    t = RuleType(preset.file_type, t, CategoryOf(gguf_name), LayerOf(gguf_name), ne0, model,
                 opt.has_imatrix);
  return Fallback(t, ne0, fell_back);
}

bool LlamaQuantizeOrder(const std::string& a, const std::string& b) {
  const int la = LayerOf(a), lb = LayerOf(b);
  if (la != lb) return la < lb;
  return a < b;
}

}  // namespace elm
