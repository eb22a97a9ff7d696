// Model conversion between the layouts elm reads: any ModelSource (an HF folder, an mlx-lm
// folder, optionally MLX-quantized, or a GGUF file) written as GGUF, MLX or HF. Unquantized
// tensors pass through byte for byte, so conversions between F32/F16/BF16 layouts are bit-exact.
// Outputs appear atomically (docs/formats.md). The writers: io/gguf_convert.h (GGUF) and
// io/mlx_folder.h (HF and MLX folders).
#pragma once

#include <optional>
#include <string>

#include "base/dtype.h"
#include "io/hf_chat_template.h"
#include "io/mlx_quant.h"
#include "io/model_source.h"
#include "io/quant_mix.h"
#include "io/write_progress.h"

namespace elm {

struct ConvertOptions {
  std::string to;  // "gguf", "mlx" or "hf"
  std::string output;
  // Matrix type. GGUF: F32, F16, BF16, Q8_0 or Q4_0 (norms stay F32, as llama.cpp writes them);
  // MLX and HF: F32, F16 or BF16 (all tensors). Unset: as stored, or the source's natural_type.
  std::optional<DType> type;
  std::optional<MlxQuantization> mlx_quant;  // MLX only: affine group quantization
  // GGUF only, instead of `type`: one of llama-quantize's presets (Q4_K_M, IQ4_XS, ...), written
  // with its per-tensor types, quantizers, tensor order and metadata (io/gguf_convert.h).
  std::optional<QuantPreset> llama_preset;
  bool pure = false;    // with llama_preset: every matrix in the preset's base type (--pure)
  std::string imatrix;  // with llama_preset: llama.cpp importance matrix file (io/imatrix.h)
  std::string name;     // GGUF general.name (default: the source folder or file name)
  // The chat template written where the source carries none: GGUF tokenizer.chat_template, MLX
  // and HF tokenizer_config.json "chat_template" (io/hf_chat_template.h); "" writes none.
  std::string chat_template = kOpenElmChatTemplateJinja;
  WriteProgressFn progress;  // optional: bytes of tensor data written so far, of the total
};

// The output path when none is given: beside the input (in the current folder for a hub
// snapshot), named after the model and the target, e.g. OpenELM-270M-q8_0.gguf,
// OpenELM-270M-mlx-4bit, OpenELM-270M-hf-bf16. Throws when that is the input itself or exists.
std::string DefaultConvertOutput(const ModelSource& source, const ConvertOptions& opt);

// Converts `source` (opened for conversion, the default of OpenModelSource) as `opt` says.
// Prints one line per written file to stderr when `verbose`.
void ConvertModel(const ModelSource& source, const ConvertOptions& opt, bool verbose = false);

}  // namespace elm
