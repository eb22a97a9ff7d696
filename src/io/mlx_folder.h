// Writing safetensors model folders: Apple's HF layout, or the layout mlx-lm's openelm model loads
// (same tensor names; config.json with per-layer lists; optional MLX group quantization, see
// mlx_quant.h). The folder appears atomically: it is assembled in a temp folder beside the
// destination and renamed into place, so a failed conversion leaves nothing behind.
#pragma once

#include <optional>
#include <string>

#include "base/dtype.h"
#include "io/mlx_quant.h"
#include "io/write_progress.h"

namespace elm {

struct ModelSource;

struct FolderOptions {
  bool mlx = false;  // mlx-lm flavour (config fields, "format": "mlx" metadata, quantization)
  // Type of every float tensor (and of MLX scales/biases); unset: as stored, F32 for quantized
  // sources.
  std::optional<DType> type;
  std::optional<MlxQuantization> quant;  // MLX only
  // tokenizer_config.json's "chat_template" when the source's has none ("" adds none).
  std::string chat_template;
  WriteProgressFn progress;  // optional: bytes of model.safetensors written
};

// Writes config.json, model.safetensors and the tokenizer files into `dir`, which must not exist
// or be an empty folder.
void WriteModelFolder(const ModelSource& source, const std::string& dir, const FolderOptions& opt,
                      bool verbose);

}  // namespace elm
