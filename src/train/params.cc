#include "train/params.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>

#include "base/error.h"
#include "base/mmap_file.h"
#include "config/hf_config.h"
#include "io/corenet_checkpoint.h"
#include "io/pytorch_checkpoint.h"

namespace elm {
namespace fs = std::filesystem;

namespace {
// A layer tensor's role and the LayerSlots field it fills, in the order
// OpenELMForCausalLM.named_parameters() registers them (attn: qkv_proj, q_norm, k_norm,
// out_proj; ffn: proj_1, proj_2; then ffn_norm, attn_norm).
struct LayerField {
  TensorRole role;
  float* LayerSlots::*slot;
};
constexpr LayerField kLayerFields[] = {
    {TensorRole::kQkv, &LayerSlots::qkv},          {TensorRole::kQNorm, &LayerSlots::q_norm},
    {TensorRole::kKNorm, &LayerSlots::k_norm},     {TensorRole::kOut, &LayerSlots::out},
    {TensorRole::kProj1, &LayerSlots::proj1},      {TensorRole::kProj2, &LayerSlots::proj2},
    {TensorRole::kFfnNorm, &LayerSlots::ffn_norm}, {TensorRole::kAttnNorm, &LayerSlots::attn_norm}};
constexpr int kLayerFieldCount = 8;

// Index into kLayerFields of a layer tensor.
int FieldOf(const ParamTensor& t) {
  for (int k = 0; k < kLayerFieldCount; ++k)
    if (t.spec.role == kLayerFields[k].role) return k;
  Fail("internal error: ", t.spec.name, " is not a layer tensor");
}

// Position of a tensor in named_parameters(): the embeddings, per layer the fields above, then
// the final norm and an untied lm_head.
int TorchRank(const ParamTensor& t) {
  switch (t.spec.role) {
    case TensorRole::kEmbeddings:
      return -1;
    case TensorRole::kFinalNorm:
      return (1 << 30) - 1;
    case TensorRole::kLmHead:
      return 1 << 30;
    default:
      return t.spec.layer * kLayerFieldCount + FieldOf(t);
  }
}
}  // namespace

ParamSet::ParamSet(ModelConfig cfg) : cfg_(std::move(cfg)) {
  std::vector<TensorSpec> specs = ExpectedTensors(cfg_);
  size_t total = 0;
  for (const TensorSpec& spec : specs) {
    size_t n = 1;
    for (int64_t d : spec.shape) n *= static_cast<size_t>(d);
    total += n;
  }
  Reserve(total);
  for (auto& spec : specs) {
    const bool decay = spec.shape.size() >= 2;
    Add(std::move(spec), decay);
  }
  std::vector<size_t> order = norm_order();
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return TorchRank(tensors()[a]) < TorchRank(tensors()[b]);
  });
  set_norm_order(std::move(order));
}

ModelSlots ParamSet::Slots(float* slab) const {
  ModelSlots s;
  s.layers.resize(cfg_.n_layers);
  // Dispatch on the role: the layout table (config/tensor_layout.h) decides what is there.
  for (const auto& t : tensors()) {
    float* p = slab + t.offset;
    switch (t.spec.role) {
      case TensorRole::kEmbeddings:
        s.embeddings = p;
        break;
      case TensorRole::kFinalNorm:
        s.norm = p;
        break;
      case TensorRole::kLmHead:
        s.lm_head = p;
        break;
      default:
        s.layers[t.spec.layer].*kLayerFields[FieldOf(t)].slot = p;
    }
  }
  if (cfg_.tied_embeddings) s.lm_head = s.embeddings;
  return s;
}

void ParamSet::WriteWeights(const std::string& dir, const std::string& tokenizer_json) const {
  WriteModelFolder(dir, *this, DType::kF32);
  if (!tokenizer_json.empty()) fs::copy_file(tokenizer_json, fs::path(dir) / "tokenizer.json");
}

void ParamSet::ReadWeights(const std::string& dir) {
  if (fs::exists(fs::path(dir) / "adapter_model.safetensors"))
    Fail(dir, ": this is a LoRA checkpoint (an adapter, no weights); resume it with the LoRA ",
         "config that wrote it");
  LoadParams(*this, TensorStore(dir));
}

void LoadParams(ParamSet& ps, const TensorStore& store) {
  LoadSlab(ps, store, "", ps.params.data());
}

void LoadParams(ParamSet& ps, const ModelSource& src) {
  LoadParams(ps, src, nullptr, nullptr);
}

void LoadParams(ParamSet& ps, const ModelSource& src,
                const std::function<bool(const ParamTensor&)>& claims,
                const std::function<void(const ParamTensor&, const float*)>& take) {
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < src.tensors.size(); ++i) index[src.tensors[i].spec.name] = i;
  for (const auto& t : ps.tensors()) {
    const auto it = index.find(t.spec.name);
    if (it == index.end()) Fail(src.origin, ": no tensor '", t.spec.name, "' for this config");
    const SourceTensor st = src.Fetch(it->second);
    if (st.spec.shape != t.spec.shape)
      Fail(src.origin, ": tensor '", t.spec.name, "' has shape ", ShapeString(st.spec.shape),
           "; this config needs ", ShapeString(t.spec.shape));
    if (claims && claims(t)) {
      const std::vector<uint8_t> f32 = ConvertTensor(st, DType::kF32);
      take(t, reinterpret_cast<const float*>(f32.data()));
    } else {
      // Straight into the slab: no f32 copy of the tensor beside it.
      ConvertRows(st, 0, st.is_matrix() ? st.rows() : 1, DType::kF32,
                  reinterpret_cast<uint8_t*>(ps.params.data() + t.offset));
    }
    if (claims) src.Release(it->second);
  }
}

CoreNetSteps LoadCoreNetAdamW(ParamSet& ps, const std::string& pt_path) {
  const PyTorchCheckpoint ckpt(pt_path);
  const auto state = ReadCoreNetTrainingState(ckpt);
  if (!state || !state->has_optimizer) return {};
  const CoreNetAdamW adam = ReadCoreNetAdamW(ckpt);
  std::map<std::string, const CoreNetAdamWParam*> by_name;
  for (const CoreNetAdamWParam& p : adam.params) by_name[HfNameOfCoreNet(p.name)] = &p;
  for (const auto& t : ps.tensors()) {
    auto it = by_name.find(t.spec.name);
    if (it == by_name.end())
      Fail(pt_path, ": optim_state_dict has no AdamW state for '", CoreNetNameOfHf(t.spec.name),
           "'");
    for (int k = 0; k < 2; ++k) {
      const PyValue* value = k == 0 ? it->second->exp_avg : it->second->exp_avg_sq;
      const TensorView v =
          ckpt.View(*value, it->second->name + (k == 0 ? " exp_avg" : " exp_avg_sq"));
      // The first rows of a padded embedding are its first elements (row-major).
      if (!v.dtype || static_cast<size_t>(v.numel()) < t.numel || v.shape.empty() ||
          v.shape[0] < t.spec.shape[0] ||
          static_cast<size_t>(v.numel() / v.shape[0]) * static_cast<size_t>(t.spec.shape[0]) !=
              t.numel)
        Fail(pt_path, ": the AdamW ", k == 0 ? "exp_avg" : "exp_avg_sq", " of '", it->second->name,
             "' has shape ", ShapeString(v.shape), " (", v.dtype_name, "); this config needs ",
             ShapeString(t.spec.shape));
      float* dst = (k == 0 ? ps.m.data() : ps.v.data()) + t.offset;
      ToF32(*v.dtype, v.data, dst, t.numel);
    }
  }
  return {adam.step, state->iterations};
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
