// The checkpoint layout of an OpenELM model: every tensor under its HF name, with the shape the
// config implies. One table drives loading, validation, conversion, initialization and export.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/model_config.h"

namespace elm {

// What a tensor of the layout is: the field of a layer (or of the model) it binds to.
enum class TensorRole {
  kEmbeddings,  // [V, D]
  kAttnNorm,    // [D]
  kQkv,         // [(H + 2 Hkv) Dh, D]
  kQNorm,       // [Dh] (QK-norm only)
  kKNorm,       // [Dh] (QK-norm only)
  kOut,         // [D, H Dh]
  kFfnNorm,     // [D]
  kProj1,       // [2F, D] with GLU (gate rows, then up rows), else [F, D]
  kProj2,       // [D, F]
  kFinalNorm,   // [D]
  kLmHead,      // [V, D] (untied only)
};

// One entry of the layout: HF name, expected shape and role.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  int layer = -1;  // -1 for model-level tensors
  TensorRole role = TensorRole::kEmbeddings;
};

// The layout in checkpoint order: embeddings, each layer's tensors, final norm, LM head.
std::vector<TensorSpec> ExpectedTensors(const ModelConfig& cfg);

}  // namespace elm
