#include "config/model_config.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "base/error.h"

namespace elm {

int64_t MakeDivisible(double v, int64_t divisor) {
  // new_v = max(min_value, int(v + divisor / 2) // divisor * divisor); int() truncates.
  const auto truncated = static_cast<int64_t>(v + static_cast<double>(divisor) / 2.0);
  int64_t new_v = std::max<int64_t>(divisor, truncated / divisor * divisor);
  if (static_cast<double>(new_v) < 0.9 * v) new_v += divisor;
  return new_v;
}

double RoundTo2Decimals(double x) {
  // glibc's printf converts the exact binary value and rounds half to even, as CPython's
  // round() does; reading the result back gives the nearest double, as CPython returns.
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f", x);
  return std::strtod(buf, nullptr);
}

std::vector<double> ExpandMultipliers(const std::vector<double>& given, int n_layers,
                                      const std::string& field) {
  if (given.empty()) Fail("config: '", field, "' is empty");
  for (double g : given)
    if (!(g > 0) || !(g <= 1000)) Fail("config: '", field, "' values must be in (0, 1000]");
  if (given.size() == 1) return std::vector<double>(n_layers, given[0]);
  if (given.size() == 2) {
    // round(np.linspace(lo, hi, L), 2): y_i = lo + i * ((hi - lo) / (L - 1)), last = hi.
    std::vector<double> out(n_layers);
    const double lo = given[0], hi = given[1];
    if (n_layers == 1) {
      out[0] = RoundTo2Decimals(lo);
      return out;
    }
    const double step = (hi - lo) / static_cast<double>(n_layers - 1);
    for (int i = 0; i < n_layers; ++i) {
      const double y = (i == n_layers - 1) ? hi : static_cast<double>(i) * step + lo;
      out[i] = RoundTo2Decimals(y);
    }
    return out;
  }
  if (static_cast<int>(given.size()) != n_layers)
    Fail("config: '", field, "' has ", given.size(),
         " values; expected 1, 2 (min, max) or one per layer (", n_layers, ")");
  return given;
}

void DeriveLayers(ModelConfig& cfg) {
  if (cfg.n_layers <= 0) Fail("config: num_transformer_layers must be positive");
  if (cfg.dim <= 0) Fail("config: model_dim must be positive");
  if (cfg.head_dim <= 0 || cfg.head_dim % 2 != 0)
    Fail("config: head_dim must be a positive even number (RoPE rotates halves)");
  if (cfg.gqa_groups <= 0) Fail("config: num_gqa_groups must be positive");
  if (cfg.ffn_dim_divisor <= 0) Fail("config: ffn_dim_divisor must be positive");
  const auto qkv = ExpandMultipliers(cfg.qkv_multipliers, cfg.n_layers, "qkv_multipliers");
  const auto ffn = ExpandMultipliers(cfg.ffn_multipliers, cfg.n_layers, "ffn_multipliers");
  cfg.layers.assign(cfg.n_layers, LayerConfig{});
  for (int i = 0; i < cfg.n_layers; ++i) {
    LayerConfig& l = cfg.layers[i];
    l.qkv_multiplier = qkv[i];
    l.ffn_multiplier = ffn[i];
    const int64_t qdim = MakeDivisible(static_cast<double>(cfg.dim) * qkv[i],
                                       static_cast<int64_t>(cfg.head_dim) * cfg.gqa_groups);
    l.n_heads = static_cast<int>(qdim / cfg.head_dim);
    l.n_kv_heads = l.n_heads / cfg.gqa_groups;
    l.ffn_dim =
        static_cast<int>(MakeDivisible(ffn[i] * static_cast<double>(cfg.dim), cfg.ffn_dim_divisor));
  }
}

int64_t ModelConfig::LayerParams(int i) const {
  const int64_t d = dim, hd = head_dim;
  const int64_t nq = layers[i].n_heads, f = layers[i].ffn_dim;
  int64_t p = d * qkv_out(i) + nq * hd * d + d * proj1_out(i) + f * d + 2 * d;
  if (qk_norm) p += 2 * hd;
  return p;
}

int64_t ModelConfig::ParamCount() const {
  int64_t p = static_cast<int64_t>(vocab_size) * dim + dim;
  if (!tied_embeddings) p += static_cast<int64_t>(vocab_size) * dim;
  for (int i = 0; i < n_layers; ++i) p += LayerParams(i);
  return p;
}

std::vector<std::string> PresetNames() {
  return {"OpenELM-270M", "OpenELM-450M", "OpenELM-1_1B", "OpenELM-3B"};
}

ModelConfig PresetConfig(const std::string& requested) {
  std::string n = requested;
  if (n.rfind("OpenELM-", 0) == 0) n = n.substr(8);
  for (const char* suffix : {"-Instruct", "-instruct"}) {
    const std::string s(suffix);
    if (n.size() > s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0)
      n.resize(n.size() - s.size());
  }
  ModelConfig c;
  c.vocab_size = 32000;
  c.max_context = 2048;
  c.gqa_groups = 4;
  c.ffn_dim_divisor = 256;
  c.qkv_multipliers = {0.5, 1.0};
  c.ffn_multipliers = {0.5, 4.0};
  c.head_dim = 64;
  if (n == "270M") {
    c.n_layers = 16, c.dim = 1280;
  } else if (n == "450M") {
    c.n_layers = 20, c.dim = 1536;
  } else if (n == "1_1B" || n == "1.1B") {
    c.n_layers = 28, c.dim = 2048;
    n = "1_1B";
  } else if (n == "3B") {
    c.n_layers = 36, c.dim = 3072, c.head_dim = 128;
  } else {
    Fail("unknown preset '", requested,
         "'; known: OpenELM-270M, OpenELM-450M, OpenELM-1_1B, OpenELM-3B");
  }
  c.name = "OpenELM-" + n;
  DeriveLayers(c);
  return c;
}

}  // namespace elm
