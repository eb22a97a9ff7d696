// MLX affine group quantization, the layout of mlx-lm's quantized models (nn.QuantizedLinear,
// nn.QuantizedEmbedding; docs/formats.md):
//   <name>.weight  uint32 [rows, cols * bits / 32]: element j of a row is bits
//                  [(j * bits) % 32, ...) of word (j * bits) / 32, lowest bits first;
//   <name>.scales  [rows, cols / group_size] and <name>.biases (same shape), in the model's float
//                  type (f16, bf16 or f32);
//   w[j] = scales[j / group_size] * q[j] + biases[j / group_size],  q[j] in [0, 2^bits).
// config.json carries "quantization": {"group_size": 64, "bits": 4}. Only matrices whose column
// count is a multiple of the group size are quantized; the others stay in the float type.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/dtype.h"
#include "io/safetensors.h"

namespace elm {

struct MlxQuantization {
  int bits = 4;
  int group_size = 64;
};

// config.json's "quantization" entry (nullopt when absent); errors name `origin`.
std::optional<MlxQuantization> MlxQuantizationOf(const nlohmann::json& config,
                                                 const std::string& origin);
// The same, read from a config.json file.
std::optional<MlxQuantization> MlxQuantizationOfFile(const std::string& config_path);
// Throws unless bits is 2, 4 or 8 and group_size is 32, 64 or 128 (what MLX supports).
void CheckMlxQuantization(const MlxQuantization& q, const std::string& origin);

// Quantizes one row of `cols` floats (a multiple of the group size). Scales and biases are
// rounded to `scale_type` before the integers are chosen, so the row decodes exactly as stored.
// MLX's rule: per group, the end of larger magnitude is the bias (exactly representable) and the
// scale is adjusted so that 0.0 also falls on the grid.
void MlxQuantizeRow(const float* w, int64_t cols, const MlxQuantization& q, DType scale_type,
                    uint32_t* packed, void* scales, void* biases);
void MlxDequantizeRow(const uint32_t* packed, const void* scales, const void* biases,
                      DType scale_type, int64_t cols, const MlxQuantization& q, float* out);

// Dequantized f32 copies of an MLX-quantized checkpoint's matrices, for loading: Find(name)
// returns a view of `name` (e.g. "transformer.layers.0.attn.qkv_proj.weight") as F32 [rows,
// cols] when the checkpoint stores it quantized, else nullptr. Copies are made on first use and
// can be dropped with Release once converted further.
class MlxDequantizedStore {
 public:
  MlxDequantizedStore(const TensorStore& store, const MlxQuantization& q);
  const TensorView* Find(const std::string& name);
  // Drops the copy of `name` (its view must not be used afterwards).
  void Release(const std::string& name);
  // True for the .scales/.biases companions of quantized weights (not model tensors themselves).
  static bool IsCompanion(const std::string& name);

 private:
  const TensorStore& store_;
  MlxQuantization q_;
  std::map<std::string, std::pair<TensorView, std::vector<float>>> cache_;
};

}  // namespace elm
