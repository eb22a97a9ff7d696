// Trainable parameters as flat f32 slabs that line up (llm.c): parameters, gradients and the two
// AdamW moments. Tensor k occupies [offset, offset + numel) in every slab, in the order of
// ExpectedTensors(cfg), so loading, saving, initialization, clipping and the update are one walk
// over the same table (gemma.cpp's ForEachTensor).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/dtype.h"
#include "config/model_config.h"
#include "io/safetensors.h"
#include "model/model.h"

namespace elm {

struct ParamTensor {
  TensorSpec spec;    // HF name, shape, layer
  size_t offset = 0;  // into each slab
  size_t numel = 0;
  bool decay = true;  // weight decay applies: every tensor with ndim ≥ 2 (spec §6.4)
};

// Pointers to one layer's tensors inside a slab (params, grads, m or v).
struct LayerSlots {
  float* attn_norm = nullptr;  // [D]
  float* qkv = nullptr;        // [(H + 2 Hkv) Dh, D]
  float* q_norm = nullptr;     // [Dh] (null without QK-norm)
  float* k_norm = nullptr;     // [Dh]
  float* out = nullptr;        // [D, H Dh]
  float* ffn_norm = nullptr;   // [D]
  float* proj1 = nullptr;      // [2F, D] (rows [0, F) gate, [F, 2F) up); [F, D] without GLU
  float* proj2 = nullptr;      // [D, F]
};
struct ModelSlots {
  float* embeddings = nullptr;  // [V, D]
  std::vector<LayerSlots> layers;
  float* norm = nullptr;     // [D]
  float* lm_head = nullptr;  // [V, D]; = embeddings when tied
};

class ParamSet {
 public:
  // Lays out the tensors of `cfg` and allocates the parameter slab (zero). Gradients and moments
  // are allocated by AllocateTrainingState, so `elm init` never pays for them.
  explicit ParamSet(ModelConfig cfg);

  const ModelConfig& config() const { return cfg_; }
  const std::vector<ParamTensor>& tensors() const { return tensors_; }
  size_t size() const { return size_; }  // elements per slab
  const ParamTensor* Find(const std::string& name) const;
  void ForEachTensor(const std::function<void(const ParamTensor&)>& fn) const;

  void AllocateTrainingState();
  void ZeroGrad();
  // Slots of a slab: Slots(params.data()), Slots(grads.data()), ...
  ModelSlots Slots(float* slab) const;

  std::vector<float> params, grads, m, v;

 private:
  ModelConfig cfg_;
  std::vector<ParamTensor> tensors_;
  size_t size_ = 0;
};

// Copies (widening to f32) every tensor of `store` into `ps.params`; shapes must match the table.
void LoadParams(ParamSet& ps, const TensorStore& store);
// The same from a model source (any layout io/model_source.h opens, quantized GGUFs included).
void LoadParams(ParamSet& ps, const ModelSource& src);
// Loads a slab of per-tensor values (`prefix` + HF name) from a safetensors file into `slab`.
void LoadSlab(const ParamSet& ps, const TensorStore& store, const std::string& prefix, float* slab);
// Tensors to write for one slab, named `prefix` + HF name, in `dtype` (converted into `scratch`,
// which must outlive the write).
std::vector<TensorToWrite> SlabTensors(const ParamSet& ps, const float* slab,
                                       const std::string& prefix, DType dtype,
                                       std::vector<uint16_t>& scratch);
// Writes an HF model folder that every inference command loads: config.json (+ the weights as
// model.safetensors in `dtype`). The folder must exist.
void WriteModelFolder(const std::string& dir, const ParamSet& ps, DType dtype);

}  // namespace elm
