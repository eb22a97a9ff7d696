#include "train/params.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>

#include "base/error.h"
#include "base/mmap_file.h"
#include "config/hf_config.h"

namespace elm {
namespace fs = std::filesystem;

ParamSet::ParamSet(ModelConfig cfg) : cfg_(std::move(cfg)) {
  for (auto& spec : ExpectedTensors(cfg_)) {
    ParamTensor t;
    t.numel = 1;
    for (int64_t d : spec.shape) t.numel *= static_cast<size_t>(d);
    t.decay = spec.shape.size() >= 2;
    t.offset = size_;
    t.spec = std::move(spec);
    size_ += t.numel;
    tensors_.push_back(std::move(t));
  }
  params.assign(size_, 0.0f);
}

const ParamTensor* ParamSet::Find(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.spec.name == name) return &t;
  return nullptr;
}

void ParamSet::ForEachTensor(const std::function<void(const ParamTensor&)>& fn) const {
  for (const auto& t : tensors_) fn(t);
}

void ParamSet::AllocateTrainingState() {
  grads.assign(size_, 0.0f);
  m.assign(size_, 0.0f);
  v.assign(size_, 0.0f);
}

void ParamSet::ZeroGrad() {
  std::fill(grads.begin(), grads.end(), 0.0f);
}

ModelSlots ParamSet::Slots(float* slab) const {
  ModelSlots s;
  s.layers.resize(cfg_.n_layers);
  // Dispatch on the name suffix: the table (not this function) decides the layout.
  for (const auto& t : tensors_) {
    float* p = slab + t.offset;
    const std::string& n = t.spec.name;
    auto ends = [&](const char* suffix) {
      const std::string s2(suffix);
      return n.size() >= s2.size() && n.compare(n.size() - s2.size(), s2.size(), s2) == 0;
    };
    if (t.spec.layer < 0) {
      if (n == "transformer.token_embeddings.weight")
        s.embeddings = p;
      else if (n == "transformer.norm.weight")
        s.norm = p;
      else if (n == "lm_head.weight")
        s.lm_head = p;
      else
        Fail("internal error: unknown model tensor ", n);
      continue;
    }
    LayerSlots& l = s.layers[t.spec.layer];
    if (ends(".attn_norm.weight"))
      l.attn_norm = p;
    else if (ends(".attn.qkv_proj.weight"))
      l.qkv = p;
    else if (ends(".attn.q_norm.weight"))
      l.q_norm = p;
    else if (ends(".attn.k_norm.weight"))
      l.k_norm = p;
    else if (ends(".attn.out_proj.weight"))
      l.out = p;
    else if (ends(".ffn_norm.weight"))
      l.ffn_norm = p;
    else if (ends(".ffn.proj_1.weight"))
      l.proj1 = p;
    else if (ends(".ffn.proj_2.weight"))
      l.proj2 = p;
    else
      Fail("internal error: unknown layer tensor ", n);
  }
  if (cfg_.tied_embeddings) s.lm_head = s.embeddings;
  return s;
}

void LoadSlab(const ParamSet& ps, const TensorStore& store, const std::string& prefix,
              float* slab) {
  for (const auto& t : ps.tensors()) {
    const TensorView& v = store.Get(prefix + t.spec.name);
    if (v.shape != t.spec.shape)
      Fail(store.origin(), ": tensor '", prefix + t.spec.name, "' has the wrong shape for this ",
           "config (", v.shape.size(), "-D, ", v.numel(), " elements; expected ", t.numel, ")");
    if (!v.dtype)
      Fail(store.origin(), ": tensor '", prefix + t.spec.name, "' has dtype ", v.dtype_name,
           "; elm reads F32, F16 and BF16");
    ToF32(*v.dtype, v.data, slab + t.offset, t.numel);
  }
}

void LoadParams(ParamSet& ps, const TensorStore& store) {
  LoadSlab(ps, store, "", ps.params.data());
}

void LoadParams(ParamSet& ps, const ModelSource& src) {
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < src.tensors.size(); ++i) index[src.tensors[i].spec.name] = i;
  for (const auto& t : ps.tensors()) {
    const auto it = index.find(t.spec.name);
    if (it == index.end()) Fail(src.origin, ": no tensor '", t.spec.name, "' for this config");
    const SourceTensor st = src.Fetch(it->second);
    if (st.spec.shape != t.spec.shape)
      Fail(src.origin, ": tensor '", t.spec.name, "' has shape ", ShapeString(st.spec.shape),
           "; this config needs ", ShapeString(t.spec.shape));
    const std::vector<uint8_t> f32 = ConvertTensor(st, DType::kF32);
    std::memcpy(ps.params.data() + t.offset, f32.data(), f32.size());
  }
}

std::vector<TensorToWrite> SlabTensors(const ParamSet& ps, const float* slab,
                                       const std::string& prefix, DType dtype,
                                       std::vector<uint16_t>& scratch) {
  if (dtype != DType::kF32) {
    scratch.resize(ps.size());
    FromF32(dtype, slab, scratch.data(), ps.size());
  }
  std::vector<TensorToWrite> out;
  for (const auto& t : ps.tensors()) {
    TensorToWrite w;
    w.name = prefix + t.spec.name;
    w.dtype = dtype;
    w.shape = t.spec.shape;
    w.data = dtype == DType::kF32 ? static_cast<const void*>(slab + t.offset)
                                  : static_cast<const void*>(scratch.data() + t.offset);
    out.push_back(std::move(w));
  }
  return out;
}

void WriteModelFolder(const std::string& dir, const ParamSet& ps, DType dtype) {
  std::vector<uint16_t> scratch;
  WriteSafetensors((fs::path(dir) / "model.safetensors").string(),
                   SlabTensors(ps, ps.params.data(), "", dtype, scratch), {{"format", "pt"}});
  nlohmann::json cfg = ConfigToHfJson(ps.config());
  cfg["torch_dtype"] = dtype == DType::kF32    ? "float32"
                       : dtype == DType::kBF16 ? "bfloat16"
                                               : "float16";
  const std::string text = cfg.dump(2) + "\n";
  WriteFileAtomic((fs::path(dir) / "config.json").string(), text.data(), text.size());
}

}  // namespace elm
