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

namespace {
// A layer tensor's name suffix and the LayerSlots field it fills, in the order
// OpenELMForCausalLM.named_parameters() registers them (attn: qkv_proj, q_norm, k_norm,
// out_proj; ffn: proj_1, proj_2; then ffn_norm, attn_norm).
struct LayerField {
  const char* suffix;
  float* LayerSlots::*slot;
};
constexpr LayerField kLayerFields[] = {
    {".attn.qkv_proj.weight", &LayerSlots::qkv},  {".attn.q_norm.weight", &LayerSlots::q_norm},
    {".attn.k_norm.weight", &LayerSlots::k_norm}, {".attn.out_proj.weight", &LayerSlots::out},
    {".ffn.proj_1.weight", &LayerSlots::proj1},   {".ffn.proj_2.weight", &LayerSlots::proj2},
    {".ffn_norm.weight", &LayerSlots::ffn_norm},  {".attn_norm.weight", &LayerSlots::attn_norm}};
constexpr int kLayerFieldCount = 8;

// Index into kLayerFields of a layer tensor; throws for a name the table does not know.
int FieldOf(const ParamTensor& t) {
  for (int k = 0; k < kLayerFieldCount; ++k)
    if (t.spec.name.ends_with(kLayerFields[k].suffix)) return k;
  Fail("internal error: unknown layer tensor ", t.spec.name);
}

// Position of a tensor in named_parameters(): the embeddings, per layer the fields above, then
// the final norm and an untied lm_head.
int TorchRank(const ParamTensor& t) {
  const std::string& n = t.spec.name;
  if (t.spec.layer < 0)
    return n == "transformer.token_embeddings.weight" ? -1
           : n == "lm_head.weight"                    ? 1 << 30
                                                      : (1 << 30) - 1;
  return t.spec.layer * kLayerFieldCount + FieldOf(t);
}
}  // namespace

ParamSet::ParamSet(ModelConfig cfg) : cfg_(std::move(cfg)) {
  for (auto& spec : ExpectedTensors(cfg_)) {
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
  // Dispatch on the name: the table (not this function) decides the layout.
  for (const auto& t : tensors()) {
    float* p = slab + t.offset;
    const std::string& n = t.spec.name;
    if (t.spec.layer >= 0)
      s.layers[t.spec.layer].*kLayerFields[FieldOf(t)].slot = p;
    else if (n == "transformer.token_embeddings.weight")
      s.embeddings = p;
    else if (n == "transformer.norm.weight")
      s.norm = p;
    else if (n == "lm_head.weight")
      s.lm_head = p;
    else
      Fail("internal error: unknown model tensor ", n);
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
