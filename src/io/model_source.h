// One way to open a checkpoint: an HF folder (model.safetensors or a sharded index), an mlx-lm
// folder (optionally MLX-quantized), a GGUF file (llama.cpp's OpenELM layout, or one elm
// wrote) or a PyTorch .pt file of Apple's CoreNet (with the config given apart), described alike:
// the config plus each tensor of ExpectedTensors(config) under its HF name, in its stored type,
// viewed in place in the mapped files. Model::Load builds the model from it and io/convert.h writes
// it in any layout.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/dtype.h"
#include "config/model_config.h"
#include "config/tensor_layout.h"
#include "io/corenet_checkpoint.h"
#include "io/gguf_tokenizer.h"
#include "io/safetensors.h"

namespace elm {

class GgufFile;
class MlxDequantizedStore;
class TensorStore;
struct GgufTensorInfo;

struct SourceTensor {
  TensorSpec spec;  // HF name and PyTorch shape
  DType dtype = DType::kF32;
  // The rows, row-major in `dtype`: one part, or two parts holding the first and the second half
  // of the rows (a GGUF's ffn_gate and ffn_up, which form proj_1). Empty until ModelSource::Fetch
  // for an MLX-quantized matrix.
  std::vector<const void*> parts;

  int64_t rows() const { return spec.shape[0]; }
  int64_t cols() const;  // product of the remaining dims (1 for a vector)
  int64_t numel() const { return (is_matrix() ? rows() : 1) * cols(); }
  bool is_matrix() const { return spec.shape.size() >= 2; }
  size_t row_bytes() const { return DTypeBytes(dtype, static_cast<size_t>(cols())); }
  size_t nbytes() const { return DTypeBytes(dtype, static_cast<size_t>(numel())); }
  // Row r of a matrix (of the whole tensor for a vector).
  const uint8_t* row(int64_t r) const;
};

struct SourceOptions {
  // Also read what conversions need: the tokenizer (vocabulary and files) and, for a GGUF that
  // carries no config.json (llama.cpp's), OpenELM multipliers that derive its per-layer counts
  // (config.json needs them). Loading a model for inference needs neither.
  bool for_conversion = true;
  // A PyTorch .pt checkpoint (CoreNet's, io/corenet_checkpoint.h) carries no config: the
  // model's shape is given here (elm convert --config), with its config.json text for the
  // folders a conversion writes ("" = ConfigToHfJson(*config)). Ignored for other formats.
  std::optional<ModelConfig> config;
  std::string config_json;
  CoreNetWeights pt_weights = CoreNetWeights::kModel;  // which weights of a training checkpoint
};

class ModelSource {
 public:
  std::string origin;  // the path
  // "hf" (an unquantized mlx-lm folder too: the same tensors), "mlx" (MLX-quantized), "gguf" or
  // "pytorch" (a CoreNet .pt file).
  std::string format;
  ModelConfig config;
  // config.json as the source had it (rebuilt for llama.cpp GGUFs when opened for conversion,
  // else "" for them).
  std::string config_json;
  std::vector<SourceTensor> tensors;  // ExpectedTensors(config) order
  // Tokenizer: the vocabulary in GGUF form, and tokenizer files to write into folders (read when
  // opened for conversion).
  std::optional<GgufVocab> vocab;  // nullopt when no tokenizer fits the model's vocabulary
  std::string tokenizer_json, tokenizer_config_json, special_tokens_map_json;  // "" if none
  std::optional<uint32_t> gguf_file_type;  // general.file_type of a GGUF source
  std::string gguf_name;                   // general.name of a GGUF source ("" if none)
  // The float type conversions default to where the stored types do not say: a GGUF's file type
  // (F32 for quantized files); the scales' type of an MLX-quantized folder. Unset otherwise.
  std::optional<DType> natural_type;

  // Tensor i with its data: an MLX-quantized matrix is dequantized to F32 here (once; the copy
  // lives until Release). Errors name the file and the tensor.
  SourceTensor Fetch(size_t i) const;
  // Nothing reads tensor i again: its dequantized copy is dropped and the file's pages behind it
  // are released (resident memory then holds only what the caller made of it).
  void Release(size_t i) const;
  // The tensors of an HF or MLX folder as stored (nullptr for a GGUF source).
  const TensorStore* store() const { return store_.get(); }

 private:
  friend ModelSource OpenModelSource(const std::string& path, const SourceOptions& opt);
  static ModelSource OpenFolder(const std::string& path, const SourceOptions& opt);
  static ModelSource OpenGguf(const std::string& path, const SourceOptions& opt);
  static ModelSource OpenPyTorch(const std::string& path, const SourceOptions& opt);

  // What each tensor is read from: a view of the folder's store, or the GGUF tensor(s).
  struct Backing {
    const TensorView* view = nullptr;
    std::vector<const GgufTensorInfo*> gguf;
  };
  std::vector<Backing> backing_;  // one per tensor
  std::shared_ptr<TensorStore> store_;
  std::shared_ptr<MlxDequantizedStore> mlx_;
  std::shared_ptr<GgufFile> gguf_;
  std::shared_ptr<PyTorchCheckpoint> pt_;
  std::shared_ptr<std::vector<TensorView>> pt_views_;  // what backing_ views for a .pt source
};

// Opens a model folder (HF or mlx-lm layout, detected by config.json's "quantization"), a GGUF
// file (a .gguf name or the GGUF magic) or a PyTorch .pt file (the zip magic; needs
// SourceOptions::config); a hub id `owner/name` that is not a local path opens its
// snapshot in the Hugging Face cache (io/hf_cache.h, ResolveModelPath). Shapes are checked against
// the config; tensors outside the layout are reported on stderr and ignored. Errors name the path
// and the tensor or key.
ModelSource OpenModelSource(const std::string& path, const SourceOptions& opt = {});

// Rows [r0, r0 + n) of `t` (fetched) converted to type `to` into `dst`, rows in parallel.
void ConvertRows(const SourceTensor& t, int64_t r0, int64_t n, DType to, uint8_t* dst);
// The bytes of `t` (fetched) in type `to` (a copy when the type is unchanged); `to` must fit the
// columns (a multiple of its block size).
std::vector<uint8_t> ConvertTensor(const SourceTensor& t, DType to);

}  // namespace elm
