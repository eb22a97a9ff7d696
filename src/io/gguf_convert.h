// A ModelSource written as a GGUF file in llama.cpp's OpenELM layout (see gguf_model.h), the
// tokenizer embedded. io/convert.h is the entry point for conversions.
#pragma once

#include <optional>
#include <string>

#include "base/dtype.h"
#include "io/model_source.h"
#include "io/write_progress.h"

namespace elm {

// Matrices in `type` (unset: as stored; an MLX source's natural type); norms stay F32. `name`:
// general.name (default: the source's file or folder name).
// `chat_template`: written as tokenizer.chat_template when the source's vocabulary has none
// ("" writes none but the source's).
void WriteGgufModel(const ModelSource& source, const std::string& path, std::optional<DType> type,
                    const std::string& name, const std::string& chat_template, bool verbose,
                    const WriteProgressFn& progress = {});

}  // namespace elm
