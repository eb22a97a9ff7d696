// LoRA adapters (Hu et al., 2021) for OpenELM in HuggingFace PEFT's folder layout, shared by
// training (train/lora.h), load-time merging (LoadOptions::lora) and `elm merge-lora`.
//
//   adapter_config.json        peft_type "LORA", r, lora_alpha, lora_dropout, use_rslora,
//                              target_modules, base_model_name_or_path
//   adapter_model.safetensors  F32 (F16/BF16 read too), PEFT's names:
//     base_model.model.transformer.layers.<l>.attn.qkv_proj.lora_A.weight   [r, in]
//     base_model.model.transformer.layers.<l>.attn.qkv_proj.lora_B.weight   [out, r]
//     (likewise attn.out_proj, ffn.proj_1, ffn.proj_2)
//     base_model.model.transformer.token_embeddings.lora_embedding_A        [r, vocab]
//     base_model.model.transformer.token_embeddings.lora_embedding_B        [dim, r]
//
// A linear W [out, in] becomes W + s·B·A; the embedding E [V, D] becomes E + s·(B·A)ᵀ, with
// s = alpha / r (alpha / sqrt(r) with rslora). A tied output head keeps the base embedding.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "config/model_config.h"
#include "io/safetensors.h"

namespace elm {

enum class LoraTarget { kEmbeddings = 0, kQkv, kOut, kProj1, kProj2 };
constexpr int kLoraTargetCount = 5;
// PEFT's target_modules name: "token_embeddings", "qkv_proj", "out_proj", "proj_1", "proj_2".
const char* LoraTargetName(LoraTarget t);

struct LoraSettings {
  int rank = 8;
  double alpha = 8;
  double dropout = 0;  // on the LoRA branch's input of the linear targets (not the embeddings)
  bool rslora = false;
  // DoRA (PEFT use_dora): each adapted linear also has a magnitude vector m [out] and computes
  // y = (m/n) ⊙ (x·(W + s·B·A)ᵀ), n = ‖W + s·B·A‖ per output row, treated as a constant in
  // backward (docs/training.md, "DoRA"). The linears only: an adapted embedding stays plain
  // LoRA (CoreNet sets use_dora on the linear entries; PEFT 0.9 has no DoRA embedding).
  bool dora = false;
  std::array<bool, kLoraTargetCount> targets{};  // indexed by LoraTarget
  std::string base_model;                        // base_model_name_or_path (informational)

  bool enabled() const;
  bool has(LoraTarget t) const { return targets[static_cast<int>(t)]; }
  // LoraTargetName of every target, in LoraTarget order.
  std::vector<std::string> target_names() const;
  float scaling() const;  // alpha / r, or alpha / sqrt(r) with rslora
};

struct LoraTensor {
  std::string name;            // PEFT name (see the top of this file)
  std::vector<int64_t> shape;  // A: [r, in] ([r, V] for the embeddings); B: [out, r] ([D, r])
  size_t offset = 0;           // into a slab holding every adapter tensor
  size_t numel = 0;
  int layer = -1;  // -1 for the embeddings
  LoraTarget target = LoraTarget::kQkv;
  bool is_a = true;
  bool is_magnitude = false;  // DoRA's m [out] (is_a false)
};

// The adapter tensors of `s` for model `cfg` in a fixed order (embeddings first, then per layer
// qkv_proj, out_proj, proj_1, proj_2; A before B), laid out back to back in one slab.
class LoraLayout {
 public:
  LoraLayout() = default;
  LoraLayout(const ModelConfig& cfg, const LoraSettings& s);
  const std::vector<LoraTensor>& tensors() const { return tensors_; }
  size_t size() const { return size_; }
  // The A or B tensor of (layer, target), layer -1 for the embeddings; null when not targeted.
  const LoraTensor* Get(int layer, LoraTarget t, bool a) const;
  // DoRA's magnitude vector of (layer, target); null without DoRA or when not targeted.
  const LoraTensor* Magnitude(int layer, LoraTarget t) const;

 private:
  std::vector<LoraTensor> tensors_;
  std::vector<int> index_;  // [(layer + 1) · kLoraTargetCount + target] · 2 + !a → tensor, -1
  std::vector<int> mag_index_;  // [(layer + 1) · kLoraTargetCount + target] → tensor, -1
  int n_layers_ = 0;
  size_t size_ = 0;
};

// The module a base tensor belongs to ("transformer.layers.3.attn.qkv_proj.weight" → layer 3,
// kQkv); false for tensors LoRA never targets (norms, lm_head).
bool LoraTargetOf(const std::string& base_tensor, int* layer, LoraTarget* target);

struct LoraAdapter {
  LoraSettings settings;
  LoraLayout layout;
  std::vector<float> weights;  // slab in layout order
  std::string origin;          // the folder it was read from
};

// Reads an adapter folder and checks it against `cfg`: every tensor of each targeted module must
// be present with the shape the model and rank imply (with use_dora, the magnitude vectors too).
// Throws elm::Error naming the file and tensor otherwise.
LoraAdapter LoadLoraAdapter(const std::string& dir, const ModelConfig& cfg);
// The tensors of `layout` over `slab` (F32, PEFT names with `prefix` in front), for writing.
std::vector<TensorToWrite> LoraTensorsToWrite(const LoraLayout& layout, const float* slab,
                                              const std::string& prefix = "");
// Writes adapter_config.json and adapter_model.safetensors (F32) into `dir` (created if needed),
// each file atomically.
void SaveLoraAdapter(const std::string& dir, const LoraSettings& s, const LoraLayout& layout,
                     const float* weights);

// Adds the adapter's update to base tensor `base_tensor` held as f32 [rows, cols] in `w`
// (W += s·B·A, or E += s·(B·A)ᵀ for the embeddings; with DoRA, PEFT's merge
// W' = (m/‖W + s·B·A‖)[:, None] · (W + s·B·A)). Returns false (w untouched) when the adapter
// does not target that tensor. The sum over the rank runs in double, rounded once.
bool MergeLora(const LoraAdapter& adapter, const std::string& base_tensor, float* w, int64_t rows,
               int64_t cols);

}  // namespace elm
