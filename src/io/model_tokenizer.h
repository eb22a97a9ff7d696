// Which tokenizer goes with a model file or folder: a policy over model files, so it lives in io
// (above the tokenizer module, which knows nothing of model files).
#pragma once

#include <string>

#include "tokenizer/tokenizer.h"

namespace elm {

// The tokenizer for a model: `explicit_path` if non-empty; else, when `model_dir` is a GGUF file,
// the vocabulary it carries (io/gguf_tokenizer.h); else <model_dir>/tokenizer.json if it exists;
// else Tokenizer::Default().
// `model_dir` may be a hub id, resolved as OpenModelSource resolves it.
Tokenizer LoadTokenizerFor(const std::string& model_dir, const std::string& explicit_path);

}  // namespace elm
