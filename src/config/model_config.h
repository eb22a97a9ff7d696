// OpenELM model configuration with per-layer widths (layer-wise scaling, spec §2).
// Dimension vocabulary used throughout elm: T tokens, D model_dim, Dh head_dim, H query heads,
// Hkv KV heads, F FFN width, V vocab, L layers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace elm {

struct LayerConfig {
  int n_heads = 0;     // H: query heads
  int n_kv_heads = 0;  // Hkv: key/value heads (H / num_gqa_groups)
  int ffn_dim = 0;     // F: FFN width (proj_1 has 2F outputs with GLU)
  double qkv_multiplier = 0;
  double ffn_multiplier = 0;
};

struct ModelConfig {
  std::string name = "openelm";
  int n_layers = 0;    // L
  int dim = 0;         // D
  int head_dim = 0;    // Dh
  int vocab_size = 0;  // V
  int max_context = 2048;
  int gqa_groups = 1;  // query heads per KV head
  int ffn_dim_divisor = 256;
  bool ffn_with_glu = true;
  bool qk_norm = true;
  bool tied_embeddings = true;
  double rope_base = 10000.0;
  int rope_max_length = 4096;
  float norm_eps = 1e-6f;
  int bos_id = 1;
  int eos_id = 2;
  // Multipliers as given in the config: one value (all layers), a (min, max) pair, or one per
  // layer.
  std::vector<double> qkv_multipliers;
  std::vector<double> ffn_multipliers;
  std::vector<LayerConfig> layers;  // derived, size L

  int qkv_out(int layer) const {  // rows of qkv_proj: (H + 2 Hkv) Dh
    return (layers[layer].n_heads + 2 * layers[layer].n_kv_heads) * head_dim;
  }
  int proj1_out(int layer) const { return (ffn_with_glu ? 2 : 1) * layers[layer].ffn_dim; }
  int64_t LayerParams(int layer) const;
  int64_t ParamCount() const;  // including embeddings (and lm_head when untied)
};

// CoreNet/HF make_divisible (spec §2.1).
int64_t MakeDivisible(double v, int64_t divisor);
// Python's round(x, 2) on a double: correctly rounded, ties to even on the exact binary value.
double RoundTo2Decimals(double x);
// Per-layer multipliers from a scalar, a (min, max) pair (rounded linspace), or a per-layer list.
// `field` names the config key in errors.
std::vector<double> ExpandMultipliers(const std::vector<double>& given, int n_layers,
                                      const std::string& field);
// Fills cfg.layers from the multipliers exactly as OpenELMConfig.__post_init__ does.
void DeriveLayers(ModelConfig& cfg);

// The released sizes: "OpenELM-270M", "OpenELM-450M", "OpenELM-1_1B", "OpenELM-3B" (also accepted
// without the prefix and with "1.1B"). Throws elm::Error listing the names for anything else.
ModelConfig PresetConfig(const std::string& name);
std::vector<std::string> PresetNames();

}  // namespace elm
