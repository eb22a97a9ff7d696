// An OpenELM model ready for inference: config, the checkpoint's tensors (mmapped, in their
// stored dtype) and small f32 copies of the norm weights. Read-only after loading, so one Model
// can serve many sessions (each with its own KVCache).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/model_config.h"
#include "io/safetensors.h"
#include "kernels/matmul.h"

namespace elm {

// One entry of the checkpoint layout: HF name and expected shape. The table drives loading,
// validation, initialization and export.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  int layer = -1;  // -1 for model-level tensors
};
std::vector<TensorSpec> ExpectedTensors(const ModelConfig& cfg);

struct LayerWeights {
  std::vector<float> attn_norm;  // [D]
  std::vector<float> q_norm;     // [Dh] (empty without QK-norm)
  std::vector<float> k_norm;     // [Dh]
  std::vector<float> ffn_norm;   // [D]
  MatRef qkv;                    // [(H + 2 Hkv) Dh, D]
  MatRef out;                    // [D, H Dh]
  // proj_1 [2F, D] is stored fused (rows [0, F) gate, [F, 2F) up); GGUF stores the halves
  // apart, so the forward pass sees them as two matrices. Without GLU only `up` is set ([F, D]).
  MatRef gate;                   // [F, D]
  MatRef up;                     // [F, D]
  MatRef down;                   // [D, F] proj_2
};

class Model {
 public:
  // `path`: a folder with config.json and model.safetensors (or a sharded index).
  static std::shared_ptr<const Model> Load(const std::string& path);

  const ModelConfig& config() const { return config_; }
  const std::string& path() const { return path_; }
  const MatRef& embeddings() const { return embeddings_; }  // [V, D]
  const MatRef& lm_head() const { return lm_head_; }        // [V, D] (= embeddings when tied)
  const std::vector<float>& final_norm() const { return final_norm_; }
  const LayerWeights& layer(int i) const { return layers_[i]; }
  const TensorStore& store() const { return *store_; }
  // Storage dtype of the big matrices ("F32", "BF16", ... or "mixed").
  std::string weights_dtype() const;
  size_t weights_bytes() const;  // bytes of all tensors the forward pass reads
  // Visits every tensor of the checkpoint layout with its stored view.
  void ForEachTensor(const std::function<void(const TensorSpec&, const TensorView&)>& fn) const;

 private:
  ModelConfig config_;
  std::string path_;
  std::unique_ptr<TensorStore> store_;
  MatRef embeddings_, lm_head_;
  std::vector<float> final_norm_;
  std::vector<LayerWeights> layers_;
};

}  // namespace elm
