// Model conversion between the layouts elm reads: an HF folder, an mlx-lm folder (optionally
// MLX-quantized) and a GGUF file, to GGUF, MLX or HF. Every source is first opened as a
// ModelSource: the config plus each tensor of ExpectedTensors under its HF name, in its stored
// type. Unquantized tensors pass through byte for byte, so conversions between F32/F16/BF16
// layouts are bit-exact. Outputs appear atomically (docs/formats.md).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/dtype.h"
#include "config/model_config.h"
#include "io/gguf_tokenizer.h"
#include "io/mlx_quant.h"
#include "model/model.h"

namespace elm {

struct SourceTensor {
  TensorSpec spec;  // HF name and PyTorch shape
  DType dtype = DType::kF32;
  const void* data = nullptr;  // spec.shape elements in `dtype`, row-major

  int64_t rows() const { return spec.shape[0]; }
  int64_t cols() const;  // product of the remaining dims (1 for a vector)
  bool is_matrix() const { return spec.shape.size() >= 2; }
  size_t nbytes() const;
};

struct ModelSource {
  std::string origin;  // the path
  std::string format;  // "hf", "mlx" or "gguf"
  ModelConfig config;
  std::string config_json;  // config.json as the source had it (rebuilt for llama.cpp GGUFs)
  std::vector<SourceTensor> tensors;  // ExpectedTensors(config) order
  // Tokenizer: the vocabulary in GGUF form, and tokenizer files to write into folders.
  std::optional<GgufVocab> vocab;  // nullopt when no tokenizer fits the model's vocabulary
  std::string tokenizer_json, tokenizer_config_json, special_tokens_map_json;  // "" if none
  std::optional<uint32_t> gguf_file_type;  // general.file_type of a GGUF source
  // The float type conversions default to where the stored types do not say: a GGUF's file type
  // (F32 for quantized files); the scales' type of an MLX-quantized folder. Unset otherwise.
  std::optional<DType> natural_type;
  std::vector<std::shared_ptr<const void>> keepalive;  // mappings and buffers behind `data`

  // The matrices' common type, or nullopt when they differ.
  std::optional<DType> matrix_type() const;
};

// Opens a model folder (HF or mlx-lm layout) or a GGUF file. MLX-quantized matrices are
// dequantized to F32. Errors name the path and the tensor or key.
ModelSource OpenModelSource(const std::string& path);

struct ConvertOptions {
  std::string to;  // "gguf", "mlx" or "hf"
  std::string output;
  // Matrix type. GGUF: F32, F16, BF16, Q8_0 or Q4_0 (norms stay F32, as llama.cpp writes them);
  // MLX and HF: F32, F16 or BF16 (all tensors). Unset: as stored, or the source's natural_type.
  std::optional<DType> type;
  std::optional<MlxQuantization> mlx_quant;  // MLX only: affine group quantization
  std::string name;  // GGUF general.name (default: the source folder or file name)
};

// Converts `source` as `opt` says. Prints one line per written file to stderr when `verbose`.
void ConvertModel(const ModelSource& source, const ConvertOptions& opt, bool verbose = false);

// The bytes of `t` in type `to` (a copy when the type is unchanged). Matrices are converted row
// by row in parallel; `to` must fit the columns (a multiple of its block size).
std::vector<uint8_t> ConvertTensor(const SourceTensor& t, DType to);

// Writes a GGUF file in llama.cpp's OpenELM layout (see gguf_model.h), the tokenizer embedded.
void WriteGgufModel(const ModelSource& source, const std::string& path, std::optional<DType> type,
                    const std::string& name, bool verbose);

}  // namespace elm
