// Trainable LoRA parameters (docs/openelm.md §6.10): the adapter tensors of model/lora_adapter.h as
// a TrainSlab (train/slab.h; the optimizer, clipping, MPI and checkpoint paths are the full
// model's), PEFT's initialization, and the dropout mask of the LoRA branch.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/dtype.h"

#include "model/lora_adapter.h"
#include "train/params.h"
#include "train/slab.h"

namespace elm {

// The table is the LoraLayout's, in its order (which is also the gradient norm's); weight decay
// applies to every adapter tensor when AdamWParams::weight_decay ≠ 0 (CoreNet's LoRA recipe uses
// 0). Its checkpoint weights are a PEFT adapter folder.
class LoraParams : public TrainSlab {
 public:
  LoraParams(const ModelConfig& cfg, LoraSettings s);

  const LoraSettings& settings() const { return settings_; }
  const LoraLayout& layout() const { return layout_; }
  // Pointer to the A or B tensor of (layer, target) inside `slab`; null when not targeted.
  float* Slot(float* slab, int layer, LoraTarget t, bool a) const;

  // PEFT's init: a linear's A is kaiming-uniform (a = √5: U(±1/√in)) and B zero; the embedding's
  // A is zero and B standard normal. Either way B·A = 0, so training starts at the base model.
  void Init(uint64_t seed);

  // adapter_config.json + adapter_model.safetensors; the tokenizer is the base model's.
  void WriteWeights(const std::string& dir, const std::string& tokenizer_json) const override;
  void ReadWeights(const std::string& dir) override;

 private:
  LoraSettings settings_;
  LoraLayout layout_;
};

// Inverted dropout of the LoRA branch's input: element i of (layer, target) is kept with
// probability 1 − p and then scaled by 1/(1 − p). A counter-based hash of (key, layer, target, i),
// so the mask depends on nothing but the key and costs no saved state. The trainer derives the key
// from the seed, the step and the micro-batch's index in the global batch (micro · ranks + rank):
// resume is bit-exact, and N ranks draw the masks one process with N× the accumulation draws.
float LoraDropoutScale(uint64_t key, int layer, LoraTarget t, uint64_t i, float p);
uint64_t LoraDropoutKey(uint64_t seed, int64_t step, int64_t global_micro);

// "Optionally quantized" frozen base (elm.lora_base_weights): every weight matrix of `ps`
// (embeddings and the four linears of each layer; not the norms) is rounded to the grid of `t`
// (Q8_0, Q4_0, BF16 or F16) and widened back to f32 in place. Fake quantization: the training
// sees QLoRA's base numerics, but the base is still held in f32 (no memory saving). Throws naming
// the tensor when its columns are not whole blocks of `t`.
void FakeQuantizeBase(ParamSet& ps, DType t);

// elm merge-lora: the base HF folder `base` with adapter `adapter` folded in (W + s·B·A, computed
// in f32 exactly as LoadOptions::lora does at load), written as a complete HF folder `out`
// (config.json, model.safetensors, the base's tokenizer.json if any) through a temporary folder
// renamed into place; `out` must not exist or be empty. `dtype` unset: the base's stored type.
// A tied model whose embedding is adapted comes out untied, its lm_head the base embedding (what
// the adapted model computes). Returns the dtype written.
DType MergeLoraCheckpoint(const std::string& base, const std::string& adapter,
                          const std::string& out, std::optional<DType> dtype);

}  // namespace elm
