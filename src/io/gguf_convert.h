// A ModelSource written as a GGUF file in llama.cpp's OpenELM layout (see gguf_model.h), the
// tokenizer embedded. io/convert.h is the entry point for conversions.
#pragma once

#include <optional>
#include <string>

#include "base/dtype.h"
#include "io/imatrix.h"
#include "io/model_source.h"
#include "io/quant_mix.h"
#include "io/write_progress.h"

namespace elm {

// llama-quantize's layout for WriteGgufModel: the preset's per-tensor types (io/quant_mix.h), its
// quantizers (base/kquant_write.h), its tensor order and its metadata (the source's keys, then
// general.quantization_version and general.file_type, then the quantize.imatrix.* keys), so that
// the file equals what llama-quantize writes from elm's f32 GGUF of the same source.
struct GgufQuantMix {
  QuantPreset preset;
  bool pure = false;                          // llama-quantize --pure
  const ImportanceMatrix* imatrix = nullptr;  // llama-quantize --imatrix
};

// Matrices in `type` (unset: as stored; an MLX source's natural type), or as `mix` says when
// given (then `type` must be unset); norms stay F32. `name`:
// general.name (default: the source's file or folder name).
// `chat_template`: written as tokenizer.chat_template when the source's vocabulary has none
// ("" writes none but the source's).
void WriteGgufModel(const ModelSource& source, const std::string& path, std::optional<DType> type,
                    const std::string& name, const std::string& chat_template, bool verbose,
                    const WriteProgressFn& progress = {}, const GgufQuantMix* mix = nullptr);

}  // namespace elm
