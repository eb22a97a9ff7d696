#include "io/gguf_model.h"

#include <cmath>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>

#include "base/error.h"
#include "config/hf_config.h"
#include "io/gguf_writer.h"

namespace elm {
namespace {

constexpr const char* kArch = "openelm";

std::string Key(const char* suffix) {
  return std::string(kArch) + "." + suffix;
}

// What llama.cpp's keys say about the model, before multipliers are chosen.
struct GgufDims {
  int n_layers = 0, dim = 0, head_dim = 0, vocab = 0, context = 0, gqa = 1;
  std::vector<int> heads, kv_heads, ffn;
  double rope_base = 10000.0;
  float eps = 1e-6f;
  bool qk_norm = true, tied = true, glu = true;
};

int CheckedInt(const GgufFile& f, const std::string& key, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) Fail(f.origin(), ": key '", key, "' is ", v, ", expected ", lo, "..", hi);
  return static_cast<int>(v);
}

GgufDims ReadDims(const GgufFile& f) {
  const std::string& o = f.origin();
  const std::string arch = f.GetString("general.architecture");
  if (arch != kArch)
    Fail(o, ": general.architecture is '", arch, "'; elm runs OpenELM ('openelm') models");
  GgufDims d;
  d.n_layers = CheckedInt(f, Key("block_count"), f.GetInt(Key("block_count")), 1, 4096);
  d.dim = CheckedInt(f, Key("embedding_length"), f.GetInt(Key("embedding_length")), 1, 1 << 20);
  d.context = CheckedInt(f, Key("context_length"), f.GetInt(Key("context_length")), 1, 1 << 30);
  const size_t L = static_cast<size_t>(d.n_layers);
  auto per_layer = [&](const char* suffix, int64_t lo) {
    std::vector<int> out;
    const std::string key = Key(suffix);
    for (int64_t v : f.GetIntPerLayer(key, L)) out.push_back(CheckedInt(f, key, v, lo, 1 << 24));
    return out;
  };
  d.heads = per_layer("attention.head_count", 1);
  d.kv_heads = per_layer("attention.head_count_kv", 1);
  d.ffn = per_layer("feed_forward_length", 1);
  const std::string k_len = Key("attention.key_length"), rope_dims = Key("rope.dimension_count");
  if (f.Find(k_len)) {
    d.head_dim = CheckedInt(f, k_len, f.GetInt(k_len), 2, 1 << 16);
  } else if (f.Find(rope_dims)) {
    d.head_dim = CheckedInt(f, rope_dims, f.GetInt(rope_dims), 2, 1 << 16);
  } else {
    Fail(o, ": missing metadata key '", k_len, "' (and '", rope_dims, "')");
  }
  const std::string v_len = Key("attention.value_length");
  if (f.Find(v_len) && f.GetInt(v_len) != d.head_dim)
    Fail(o, ": key '", v_len, "' (", f.GetInt(v_len), ") differs from the key length ", d.head_dim,
         "; OpenELM uses one head size");
  if (f.Find(rope_dims) && f.GetInt(rope_dims) != d.head_dim)
    Fail(o, ": key '", rope_dims, "' is ", f.GetInt(rope_dims),
         "; elm implements full-head RoPE only (", d.head_dim, ")");
  const std::string base = Key("rope.freq_base");
  if (f.Find(base)) d.rope_base = f.GetFloat(base);
  if (!(d.rope_base > 0)) Fail(o, ": key '", base, "' must be positive");
  const std::string eps = Key("attention.layer_norm_rms_epsilon");
  d.eps = static_cast<float>(f.GetFloat(eps));
  if (!(d.eps > 0) || !(d.eps < 1)) Fail(o, ": key '", eps, "' must be in (0, 1)");
  for (size_t i = 0; i < L; ++i) {
    if (d.heads[i] % d.kv_heads[i] != 0)
      Fail(o, ": layer ", i, ": ", d.heads[i], " query heads are not a multiple of ", d.kv_heads[i],
           " KV heads");
    const int g = d.heads[i] / d.kv_heads[i];
    if (i == 0) d.gqa = g;
    if (g != d.gqa)
      Fail(o, ": layer ", i, " groups ", g, " query heads per KV head, layer 0 groups ", d.gqa,
           "; OpenELM uses one num_gqa_groups");
  }
  const GgufTensorInfo& emb = f.GetTensor("token_embd.weight");
  if (emb.ne.size() != 2 || emb.ne[0] != d.dim)
    Fail(o, ": tensor 'token_embd.weight' must be [", d.dim, ", vocab] in GGML order");
  d.vocab = CheckedInt(f, "token_embd.weight", emb.ne[1], 1, 1 << 24);
  d.tied = f.FindTensor("output.weight") == nullptr;
  d.qk_norm = f.FindTensor("blk.0.attn_q_norm.weight") != nullptr;
  d.glu = f.FindTensor("blk.0.ffn_gate.weight") != nullptr;
  return d;
}

// Preference among equivalent multipliers: the "roundest" value, then the nearest to the
// estimate. Candidates are k / 100 (configs carry at most two decimals).
int Tier(int k) {
  return k % 25 == 0 ? 0 : k % 10 == 0 ? 1 : k % 5 == 0 ? 2 : 3;
}

// Hundredths k in [1, 1000] with fits(k / 100.0), best first.
std::vector<int> MultiplierCandidates(const std::function<bool(double)>& fits, double estimate) {
  std::vector<int> ks;
  for (int k = 1; k <= 1000; ++k)
    if (fits(k / 100.0)) ks.push_back(k);
  std::stable_sort(ks.begin(), ks.end(), [&](int a, int b) {
    if (Tier(a) != Tier(b)) return Tier(a) < Tier(b);
    return std::fabs(a / 100.0 - estimate) < std::fabs(b / 100.0 - estimate);
  });
  return ks;
}

// Whether `c`'s multipliers derive the file's head counts (or FFN widths) for every layer.
enum class Part { kHeads, kFfn };
bool LayersMatch(ModelConfig c, const GgufDims& d, Part part) {
  try {
    DeriveLayers(c);
  } catch (const Error&) {
    return false;
  }
  for (int i = 0; i < d.n_layers; ++i) {
    const auto& l = c.layers[i];
    if (part == Part::kHeads && (l.n_heads != d.heads[i] || l.n_kv_heads != d.kv_heads[i]))
      return false;
    if (part == Part::kFfn && l.ffn_dim != d.ffn[i]) return false;
  }
  return true;
}

// Multipliers as Apple's configs give them: one value, else a (min, max) pair expanded by
// round(linspace, 2), else one per layer. `value_of(i, m)` is what multiplier m derives for layer
// i, `want[i]` the file's value, `estimate(i)` the natural multiplier; `set` installs a choice
// into the config that `LayersMatch(part)` then checks. False if nothing fits.
bool SearchMultipliers(ModelConfig& c, const GgufDims& d, Part part, const std::vector<int>& want,
                       const std::function<int64_t(int, double)>& value_of,
                       const std::function<double(int)>& estimate,
                       const std::function<void(ModelConfig&, std::vector<double>)>& set) {
  const int L = d.n_layers;
  // The best few candidates for each end bound the pair search (a hostile file cannot make it
  // quadratic in the 1000 candidates).
  auto candidates = [&](int i) {
    auto ks =
        MultiplierCandidates([&](double m) { return value_of(i, m) == want[i]; }, estimate(i));
    if (ks.size() > 40) ks.resize(40);
    return ks;
  };
  const auto first = candidates(0), last = candidates(L - 1);
  for (int k : first) {
    set(c, {k / 100.0});
    if (LayersMatch(c, d, part)) return true;
  }
  if (L > 1) {
    struct Pair {
      int lo, hi;
    };
    std::vector<Pair> pairs;
    for (int lo : first)
      for (int hi : last) pairs.push_back({lo, hi});
    auto distance = [&](const Pair& p) {
      return std::fabs(p.lo / 100.0 - estimate(0)) + std::fabs(p.hi / 100.0 - estimate(L - 1));
    };
    std::stable_sort(pairs.begin(), pairs.end(), [&](const Pair& a, const Pair& b) {
      const int ta = Tier(a.lo) + Tier(a.hi), tb = Tier(b.lo) + Tier(b.hi);
      if (ta != tb) return ta < tb;
      return distance(a) < distance(b);
    });
    if (pairs.size() > 200) pairs.resize(200);  // each try derives every layer
    for (const auto& p : pairs) {
      set(c, {p.lo / 100.0, p.hi / 100.0});
      if (LayersMatch(c, d, part)) return true;
    }
  }
  if (L > 2) {  // a list of two would read as a (min, max) pair
    std::vector<double> per_layer;
    for (int i = 0; i < L; ++i) {
      const auto ks = candidates(i);
      per_layer.push_back(ks.empty() ? estimate(i) : ks[0] / 100.0);
    }
    set(c, per_layer);
    if (LayersMatch(c, d, part)) return true;
  }
  return false;
}

// The per-layer counts of `c` as the search below reads them.
GgufDims DimsOf(const ModelConfig& c) {
  GgufDims d;
  d.n_layers = c.n_layers;
  d.dim = c.dim;
  d.head_dim = c.head_dim;
  d.gqa = c.gqa_groups;
  for (const auto& l : c.layers) {
    d.heads.push_back(l.n_heads);
    d.kv_heads.push_back(l.n_kv_heads);
    d.ffn.push_back(l.ffn_dim);
  }
  return d;
}

// Multipliers for a file without elm.hf_config_json (e.g. written by llama.cpp).
void ChooseMultipliers(ModelConfig& c, const GgufDims& d, const std::string& origin) {
  const double D = d.dim;
  // Placeholders while the other part is searched (LayersMatch checks one part at a time).
  c.qkv_multipliers = {1.0};
  c.ffn_multipliers = {1.0};
  // FFN widths: the largest power-of-two divisor (up to Apple's 256) of every width.
  int div = 256;
  for (int f : d.ffn)
    while (div > 1 && f % div != 0) div /= 2;
  c.ffn_dim_divisor = div;
  const bool ffn_ok = SearchMultipliers(
      c, d, Part::kFfn, d.ffn, [&](int, double m) { return MakeDivisible(m * D, div); },
      [&](int i) { return d.ffn[i] / D; },
      [](ModelConfig& cfg, std::vector<double> m) { cfg.ffn_multipliers = std::move(m); });
  const int64_t hdiv = static_cast<int64_t>(d.head_dim) * d.gqa;
  const bool heads_ok = SearchMultipliers(
      c, d, Part::kHeads, d.heads,
      [&](int, double m) { return MakeDivisible(D * m, hdiv) / d.head_dim; },
      [&](int i) { return d.heads[i] * d.head_dim / D; },
      [](ModelConfig& cfg, std::vector<double> m) { cfg.qkv_multipliers = std::move(m); });
  if (!ffn_ok || !heads_ok)
    Fail(origin, ": the per-layer ", ffn_ok ? "head counts" : "FFN widths",
         " cannot be expressed as OpenELM multipliers (head_dim ", d.head_dim, ", model_dim ",
         d.dim, ")");
}

std::string Join(const std::vector<int>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

}  // namespace

uint32_t GgufFileTypeFor(DType t) {
  switch (t) {
    case DType::kF32:
      return kFileAllF32;
    case DType::kF16:
      return kFileMostlyF16;
    case DType::kBF16:
      return kFileMostlyBF16;
    case DType::kQ8_0:
      return kFileMostlyQ8_0;
    case DType::kQ4_0:
      return kFileMostlyQ4_0;
    default:  // elm writes no other type
      return kFileAllF32;
  }
}

std::optional<DType> DTypeOfGgufFileType(uint32_t ft) {
  switch (ft) {
    case kFileAllF32:
      return DType::kF32;
    case kFileMostlyF16:
      return DType::kF16;
    case kFileMostlyBF16:
      return DType::kBF16;
    case kFileMostlyQ8_0:
      return DType::kQ8_0;
    case kFileMostlyQ4_0:
      return DType::kQ4_0;
    default:
      return std::nullopt;
  }
}

ModelConfig ConfigFromGguf(const GgufFile& f) {
  const std::string& o = f.origin();
  const GgufDims d = ReadDims(f);
  ModelConfig c;
  if (const GgufValue* hf = f.Find(kGgufHfConfigKey)) {
    if (hf->type != GgufType::kString) Fail(o, ": key '", kGgufHfConfigKey, "' must be a string");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(hf->str);
    } catch (const nlohmann::json::exception& e) {
      Fail(o, ": key '", kGgufHfConfigKey, "' is not valid JSON: ", e.what());
    }
    c = ConfigFromHfJson(j, o + " (" + kGgufHfConfigKey + ")");
    auto differs = [&](const char* what, const std::string& a, const std::string& b) {
      if (a != b)
        Fail(o, ": ", kGgufHfConfigKey, " and the llama.cpp keys disagree on ", what, " (", a,
             " vs ", b, ")");
    };
    std::vector<int> heads, kv, ffn;
    for (const auto& l : c.layers) {
      heads.push_back(l.n_heads);
      kv.push_back(l.n_kv_heads);
      ffn.push_back(l.ffn_dim);
    }
    differs("the layer count", std::to_string(c.n_layers), std::to_string(d.n_layers));
    differs("model_dim", std::to_string(c.dim), std::to_string(d.dim));
    differs("head_dim", std::to_string(c.head_dim), std::to_string(d.head_dim));
    differs("vocab_size", std::to_string(c.vocab_size), std::to_string(d.vocab));
    differs("the query heads", Join(heads), Join(d.heads));
    differs("the KV heads", Join(kv), Join(d.kv_heads));
    differs("the FFN widths", Join(ffn), Join(d.ffn));
    differs("tied embeddings", std::to_string(c.tied_embeddings), std::to_string(d.tied));
    differs("QK-norm", std::to_string(c.qk_norm), std::to_string(d.qk_norm));
    differs("ffn_with_glu", std::to_string(c.ffn_with_glu), std::to_string(d.glu));
    c.rope_base = d.rope_base;
    c.max_context = d.context;
  } else {
    c.name = f.Find("general.name") && f.Get("general.name").type == GgufType::kString
                 ? f.GetString("general.name")
                 : "openelm";
    c.n_layers = d.n_layers;
    c.dim = d.dim;
    c.head_dim = d.head_dim;
    c.vocab_size = d.vocab;
    c.max_context = d.context;
    c.gqa_groups = d.gqa;
    c.ffn_with_glu = d.glu;
    c.qk_norm = d.qk_norm;
    c.tied_embeddings = d.tied;
    c.rope_base = d.rope_base;
    if (d.head_dim % 2 != 0)
      Fail(o, ": the head size ", d.head_dim, " must be even (RoPE rotates halves)");
    // The per-layer counts as stored; OpenELM multipliers are only chosen for a config.json
    // (HfConfigFromGguf).
    c.layers.resize(static_cast<size_t>(d.n_layers));
    for (int i = 0; i < d.n_layers; ++i)
      c.layers[i] = LayerConfig{d.heads[i], d.kv_heads[i], d.ffn[i], 0, 0};
    if (f.Find("tokenizer.ggml.bos_token_id"))
      c.bos_id = static_cast<int>(f.GetInt("tokenizer.ggml.bos_token_id"));
    if (f.Find("tokenizer.ggml.eos_token_id"))
      c.eos_id = static_cast<int>(f.GetInt("tokenizer.ggml.eos_token_id"));
  }
  c.norm_eps = d.eps;
  return c;
}

ModelConfig HfConfigFromGguf(const GgufFile& f) {
  ModelConfig c = ConfigFromGguf(f);
  if (f.Find(kGgufHfConfigKey) == nullptr) {
    ChooseMultipliers(c, DimsOf(c), f.origin());
    DeriveLayers(c);
  }
  return c;
}

std::string GgufSizeLabel(int64_t n) {
  const double x = static_cast<double>(n);
  double scaled;
  const char* suffix;
  if (x > 1e12) {
    scaled = x * 1e-12;
    suffix = "T";
  } else if (x > 1e9) {
    scaled = x * 1e-9;
    suffix = "B";
  } else if (x > 1e6) {
    scaled = x * 1e-6;
    suffix = "M";
  } else {
    scaled = x * 1e-3;
    suffix = "K";
  }
  // Two significant digits at least: 4.4M, 27M, 270M.
  std::string whole = std::to_string(static_cast<long long>(std::nearbyint(scaled)));
  while (!whole.empty() && whole[0] == '0') whole.erase(0, 1);
  const int fix = std::max(2 - static_cast<int>(whole.size()), 0);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f%s", fix, scaled, suffix);
  return buf;
}

void AddOpenElmMetadata(GgufWriter& w, const ModelConfig& c, const std::string& name,
                        int64_t n_params, uint32_t file_type) {
  std::vector<int> ffn, heads, kv;
  for (const auto& l : c.layers) {
    ffn.push_back(l.ffn_dim);
    heads.push_back(l.n_heads);
    kv.push_back(l.n_kv_heads);
  }
  w.Set("general.architecture", GgufValue::String(kArch));
  w.Set("general.type", GgufValue::String("model"));
  w.Set("general.name", GgufValue::String(name));
  w.Set("general.size_label", GgufValue::String(GgufSizeLabel(n_params)));
  w.Set(Key("block_count"), GgufValue::U32(static_cast<uint32_t>(c.n_layers)));
  w.Set(Key("context_length"), GgufValue::U32(static_cast<uint32_t>(c.max_context)));
  w.Set(Key("embedding_length"), GgufValue::U32(static_cast<uint32_t>(c.dim)));
  w.Set(Key("feed_forward_length"), GgufValue::I32Array(ffn));
  w.Set(Key("attention.head_count"), GgufValue::I32Array(heads));
  w.Set(Key("attention.head_count_kv"), GgufValue::I32Array(kv));
  w.Set(Key("rope.freq_base"), GgufValue::F32(static_cast<float>(c.rope_base)));
  w.Set(Key("attention.layer_norm_rms_epsilon"), GgufValue::F32(c.norm_eps));
  w.Set(Key("rope.dimension_count"), GgufValue::U32(static_cast<uint32_t>(c.head_dim)));
  w.Set(Key("attention.key_length"), GgufValue::U32(static_cast<uint32_t>(c.head_dim)));
  w.Set(Key("attention.value_length"), GgufValue::U32(static_cast<uint32_t>(c.head_dim)));
  w.Set("general.file_type", GgufValue::U32(file_type));
}

std::vector<GgufTensorFor> MapGgufTensors(const GgufFile& f, const ModelConfig& cfg) {
  const std::string& o = f.origin();
  std::vector<GgufTensorFor> out;
  std::set<std::string> used;
  for (const TensorSpec& spec : ExpectedTensors(cfg)) {
    GgufTensorFor t{spec, {}};
    for (const GgufNamePart& np : HfToGguf(spec.name, cfg.ffn_with_glu)) {
      const GgufTensorInfo& info = f.GetTensor(np.gguf);
      std::vector<int64_t> want = spec.shape;
      if (np.part != RowPart::kAll) want[0] /= 2;
      if (info.torch_shape() != want) {
        std::string got, exp;
        for (int64_t v : info.ne) got += (got.empty() ? "" : ", ") + std::to_string(v);
        for (auto it = want.rbegin(); it != want.rend(); ++it)
          exp += (exp.empty() ? "" : ", ") + std::to_string(*it);
        Fail(o, ": tensor '", np.gguf, "' has GGML dims [", got, "] but the metadata implies [",
             exp, "]", spec.layer >= 0 ? " (layer " + std::to_string(spec.layer) + ")" : "");
      }
      if (!info.dtype)
        Fail(o, ": tensor '", np.gguf, "' has type ", info.type_name(),
             "; elm reads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q4_K, ",
             "Q5_K, Q6_K and IQ4_XS");
      if (info.ne.size() == 1 && DTypeBlock(*info.dtype) != 1)
        Fail(o, ": tensor '", np.gguf, "' is a vector stored as ", info.type_name(),
             "; norm weights must be F32, F16 or BF16");
      t.parts.push_back({&info, np.part});
      used.insert(np.gguf);
    }
    // The halves of proj_1 must agree on the type to form one matrix.
    if (t.parts.size() == 2 && t.parts[0].tensor->ggml_type != t.parts[1].tensor->ggml_type)
      Fail(o, ": tensors '", t.parts[0].tensor->name, "' and '", t.parts[1].tensor->name,
           "' have different types (", t.parts[0].tensor->type_name(), ", ",
           t.parts[1].tensor->type_name(), ")");
    out.push_back(std::move(t));
  }
  for (const auto& t : f.tensors())
    if (!used.count(t.name))
      std::fprintf(stderr, "warning: %s: ignoring unexpected tensor '%s'\n", o.c_str(),
                   t.name.c_str());
  return out;
}

}  // namespace elm
