// The model's parameters as a TrainSlab (train/slab.h): every tensor of ExpectedTensors(cfg) in
// one table, so loading, saving, initialization, clipping and the update are one walk over it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/dtype.h"
#include "config/model_config.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "train/slab.h"

namespace elm {

// A row of ParamSet's table: the HF name, shape and layer of a model tensor.
using ParamTensor = SlabTensor;

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

// Every tensor of a model as a TrainSlab, in the order of ExpectedTensors(cfg); weight decay on
// tensors with ndim ≥ 2 (docs/openelm.md §6.4); the gradient norm in
// OpenELMForCausalLM.named_parameters() order. Its checkpoint weights are an HF model folder.
class ParamSet : public TrainSlab {
 public:
  // Lays out the tensors of `cfg` and allocates the parameter slab (zero). Gradients and moments
  // are allocated by AllocateTrainingState, so `elm init` never pays for them.
  explicit ParamSet(ModelConfig cfg);

  const ModelConfig& config() const { return cfg_; }
  // Slots of a slab: Slots(params.data()), Slots(grads.data()), ...
  ModelSlots Slots(float* slab) const;

  void WriteWeights(const std::string& dir, const std::string& tokenizer_json) const override;
  void ReadWeights(const std::string& dir) override;

 private:
  ModelConfig cfg_;
};

// Copies (widening to f32) every tensor of `store` into `ps.params`; shapes must match the table.
void LoadParams(ParamSet& ps, const TensorStore& store);
// The same from a model source (any layout io/model_source.h opens, quantized GGUFs included).
void LoadParams(ParamSet& ps, const ModelSource& src);
// The same, except for the tensors `claims` picks: each of those is handed to `take` widened to f32
// (a buffer valid during the call, one tensor at a time) and its range of the slab is never
// written. Every tensor's source is released once read (ModelSource::Release), so neither the
// checkpoint nor an f32 copy of the claimed tensors is ever resident whole (QLoRA's loading,
// train/qlora_base.h).
void LoadParams(ParamSet& ps, const ModelSource& src,
                const std::function<bool(const ParamTensor&)>& claims,
                const std::function<void(const ParamTensor&, const float*)>& take);
// A CoreNet training checkpoint's AdamW moments (io/corenet_checkpoint.h) into `ps.m` and `ps.v`
// (allocated), each parameter found by its CoreNet name; an embedding with CoreNet's padding rows
// keeps the first rows. Returns AdamW's step count, the step the run continues from, and the
// checkpoint's own "iterations" (which the caller reports when the two differ; docs/training.md,
// "Continuing a CoreNet run"); both 0 (moments untouched) for a model file, which has no optimizer
// state. Errors name the file and tensor.
struct CoreNetSteps {
  int64_t adamw_step = 0;  // torch.optim.AdamW's "step": the run continues from it
  int64_t iterations = 0;  // the training checkpoint's "iterations"
};
CoreNetSteps LoadCoreNetAdamW(ParamSet& ps, const std::string& pt_path);
// Writes an HF model folder that every inference command loads: config.json (+ the weights as
// model.safetensors in `dtype`). The folder must exist.
void WriteModelFolder(const std::string& dir, const ParamSet& ps, DType dtype);

}  // namespace elm
