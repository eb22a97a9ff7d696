#include "io/model_tokenizer.h"

#include <filesystem>
#include <system_error>

#include "io/gguf.h"
#include "io/gguf_tokenizer.h"
#include "io/hf_cache.h"

namespace elm {

Tokenizer LoadTokenizerFor(const std::string& model, const std::string& explicit_path) {
  if (!explicit_path.empty()) return Tokenizer::FromFile(explicit_path);
  // A hub id resolves to its cached snapshot, as in OpenModelSource.
  const std::string model_dir = model.empty() ? model : ResolveModelPath(model);
  // A GGUF file carries its own vocabulary (tokenizer.ggml.*).
  if (!model_dir.empty() && IsGgufFile(model_dir)) {
    if (auto t = TokenizerFromGguf(model_dir)) return *t;
  }
  if (!model_dir.empty()) {
    const std::filesystem::path candidate = std::filesystem::path(model_dir) / "tokenizer.json";
    std::error_code ec;
    if (std::filesystem::is_regular_file(candidate, ec))
      return Tokenizer::FromFile(candidate.string());
  }
  return Tokenizer::Default();
}

}  // namespace elm
