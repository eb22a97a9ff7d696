// A GGUF file (llama.cpp's OpenELM layout, or one elm wrote) as a Model: the file is mmapped and
// the matrices are used in place, in their stored type (F32, F16, BF16, Q8_0, Q4_0); norm weights
// are copied to f32. GGUF already stores proj_1 as two matrices (ffn_gate, ffn_up), which is how
// the forward pass consumes it.
#include "base/error.h"
#include "io/gguf.h"
#include "io/gguf_model.h"
#include "model/model.h"

namespace elm {

std::shared_ptr<const Model> LoadModelFromGguf(const std::string& path, const LoadOptions& opt) {
  auto file = std::make_shared<GgufFile>(path);
  auto m = std::shared_ptr<Model>(new Model());
  m->path_ = path;
  m->config_ = ConfigFromGguf(*file);
  m->keepalive_ = file;
  const ModelConfig& c = m->config_;
  const std::vector<GgufTensorFor> map = MapGgufTensors(*file, c);
  file->DropMetadata();  // the model keeps the file for its tensors only

  auto mat = [&](const GgufTensorInfo& t) -> MatRef {
    const MatRef src{*t.dtype, t.data, t.ne.size() > 1 ? t.ne[1] : 1, t.ne[0]};
    const DType to = opt.weights.value_or(src.dtype);
    if (to == src.dtype && Model::KeepMapped(opt, to)) return src;
    const MatRef dst = ConvertMatrix(src, to, m->owned_, path, t.name, Model::ShouldPack(opt));
    file->Evict(t);  // the file's pages for this tensor are not needed any more
    return dst;
  };
  auto vec = [](const GgufTensorInfo& t) {
    std::vector<float> out(static_cast<size_t>(t.numel()));
    ToF32(*t.dtype, t.data, out.data(), out.size());
    return out;
  };
  size_t k = 0;
  auto next = [&]() -> const GgufTensorFor& { return map[k++]; };
  auto one = [&]() -> const GgufTensorInfo& { return *next().parts.at(0).tensor; };

  m->embeddings_ = mat(one());
  m->layers_.resize(c.n_layers);
  for (int i = 0; i < c.n_layers; ++i) {
    LayerWeights& l = m->layers_[i];
    l.attn_norm = vec(one());
    l.qkv = mat(one());
    if (c.qk_norm) {
      l.q_norm = vec(one());
      l.k_norm = vec(one());
    }
    l.out = mat(one());
    l.ffn_norm = vec(one());
    const GgufTensorFor& proj1 = next();
    if (c.ffn_with_glu) {
      l.gate = mat(*proj1.parts.at(0).tensor);
      l.up = mat(*proj1.parts.at(1).tensor);
    } else {
      l.up = mat(*proj1.parts.at(0).tensor);
    }
    l.down = mat(one());
  }
  m->final_norm_ = vec(one());
  m->lm_head_ = c.tied_embeddings ? m->embeddings_ : mat(one());
  ELM_CHECK(k == map.size());
  m->PackForKernels(opt);
  return m;
}

}  // namespace elm
