#include "model/model.h"

#include <cstdio>
#include <filesystem>
#include <set>

#include "base/error.h"
#include "config/hf_config.h"

namespace elm {
namespace fs = std::filesystem;

namespace {

std::string ShapeStr(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

const TensorView& Checked(const TensorStore& store, const TensorSpec& spec) {
  const TensorView& v = store.Get(spec.name);
  if (!v.dtype)
    Fail(store.origin(), ": tensor '", spec.name, "' has dtype ", v.dtype_name,
         "; elm reads F32, F16 and BF16");
  if (v.shape != spec.shape)
    Fail(store.origin(), ": tensor '", spec.name, "' has shape ", ShapeStr(v.shape),
         " but config.json implies ", ShapeStr(spec.shape),
         spec.layer >= 0 ? " (layer " + std::to_string(spec.layer) + ")" : std::string());
  return v;
}

MatRef ToMat(const TensorView& v) {
  return MatRef{*v.dtype, v.data, v.shape[0], v.shape.size() > 1 ? v.shape[1] : 1};
}

std::vector<float> ToVec(const TensorView& v) {
  std::vector<float> out(static_cast<size_t>(v.numel()));
  ToF32(*v.dtype, v.data, out.data(), out.size());
  return out;
}

}  // namespace

std::vector<TensorSpec> ExpectedTensors(const ModelConfig& c) {
  const int64_t d = c.dim, hd = c.head_dim, V = c.vocab_size;
  std::vector<TensorSpec> t;
  t.push_back({"transformer.token_embeddings.weight", {V, d}, -1});
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string p = "transformer.layers." + std::to_string(i) + ".";
    const int64_t nq = c.layers[i].n_heads, f = c.layers[i].ffn_dim;
    t.push_back({p + "attn_norm.weight", {d}, i});
    t.push_back({p + "attn.qkv_proj.weight", {c.qkv_out(i), d}, i});
    if (c.qk_norm) {
      t.push_back({p + "attn.q_norm.weight", {hd}, i});
      t.push_back({p + "attn.k_norm.weight", {hd}, i});
    }
    t.push_back({p + "attn.out_proj.weight", {d, nq * hd}, i});
    t.push_back({p + "ffn_norm.weight", {d}, i});
    t.push_back({p + "ffn.proj_1.weight", {c.proj1_out(i), d}, i});
    t.push_back({p + "ffn.proj_2.weight", {d, f}, i});
  }
  t.push_back({"transformer.norm.weight", {d}, -1});
  if (!c.tied_embeddings) t.push_back({"lm_head.weight", {V, d}, -1});
  return t;
}

std::shared_ptr<const Model> Model::Load(const std::string& path) {
  if (!fs::exists(path)) Fail(path, ": no such model folder");
  if (!fs::is_directory(path))
    Fail(path, ": expected a model folder (config.json + model.safetensors)");
  auto m = std::shared_ptr<Model>(new Model());
  m->path_ = path;
  const std::string cfg_path = (fs::path(path) / "config.json").string();
  if (!fs::exists(cfg_path)) Fail(path, ": no config.json in this folder");
  m->config_ = LoadHfConfig(cfg_path);
  m->store_ = std::make_unique<TensorStore>(path);
  const ModelConfig& c = m->config_;
  const TensorStore& s = *m->store_;

  const auto specs = ExpectedTensors(c);
  std::set<std::string> expected;
  for (const auto& spec : specs) expected.insert(spec.name);
  // transformer.classifier.weight exists in some checkpoints and is never used by Apple's code.
  for (const auto& [name, view] : s.all()) {
    if (expected.count(name) || name == "transformer.classifier.weight") continue;
    if (name == "lm_head.weight" && c.tied_embeddings) continue;  // tied: the head is the embedding
    std::fprintf(stderr, "warning: %s: ignoring unexpected tensor '%s'\n", path.c_str(),
                 name.c_str());
  }

  size_t k = 0;
  auto next = [&]() -> const TensorView& { return Checked(s, specs[k++]); };
  m->embeddings_ = ToMat(next());
  m->layers_.resize(c.n_layers);
  for (int i = 0; i < c.n_layers; ++i) {
    LayerWeights& l = m->layers_[i];
    l.attn_norm = ToVec(next());
    l.qkv = ToMat(next());
    if (c.qk_norm) {
      l.q_norm = ToVec(next());
      l.k_norm = ToVec(next());
    }
    l.out = ToMat(next());
    l.ffn_norm = ToVec(next());
    const MatRef proj1 = ToMat(next());
    const int64_t F = c.layers[i].ffn_dim;
    if (c.ffn_with_glu) {
      l.gate = proj1.Rows(0, F);
      l.up = proj1.Rows(F, F);
    } else {
      l.up = proj1;
    }
    l.down = ToMat(next());
  }
  m->final_norm_ = ToVec(next());
  m->lm_head_ = c.tied_embeddings ? m->embeddings_ : ToMat(next());
  ELM_CHECK(k == specs.size());
  return m;
}

void Model::ForEachTensor(
    const std::function<void(const TensorSpec&, const TensorView&)>& fn) const {
  for (const auto& spec : ExpectedTensors(config_)) fn(spec, store_->Get(spec.name));
}

std::string Model::weights_dtype() const {
  std::set<std::string> types;
  ForEachTensor([&](const TensorSpec& spec, const TensorView& v) {
    if (spec.shape.size() == 2) types.insert(v.dtype_name);
  });
  return types.size() == 1 ? *types.begin() : "mixed";
}

size_t Model::weights_bytes() const {
  size_t b = 0;
  ForEachTensor([&](const TensorSpec&, const TensorView& v) { b += v.nbytes; });
  return b;
}

}  // namespace elm
