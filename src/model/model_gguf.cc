// GGUF model loading: placeholder until the GGUF reader lands (issue: formats).
#include "base/error.h"
#include "model/model.h"

namespace elm {

std::shared_ptr<const Model> LoadModelFromGguf(const std::string& path, const LoadOptions&) {
  Fail(path, ": GGUF models are not supported yet");
}

}  // namespace elm
