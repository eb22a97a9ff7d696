// libFuzzer target for the GGUF reader and everything elm derives from a GGUF's metadata (config,
// tensor map, tokenizer). Any input may be rejected, but only with elm::Error: another exception
// escapes and aborts the run, and the sanitizers catch memory errors. Build: tests/fuzz/README.md.
#include <cstddef>
#include <cstdint>

#include "fuzz_util.h"
#include "io/gguf.h"
#include "io/gguf_model.h"
#include "io/gguf_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  elm_fuzz::ExpectOnlyElmErrors([&] {
    const auto f = elm::GgufFile::FromBytes(data, size, "fuzz.gguf");
    for (const auto& [key, value] : f->metadata()) (void)value.ToString();
    (void)elm::MapGgufTensors(*f, elm::ConfigFromGguf(*f));
    (void)elm::MapGgufTensors(*f, elm::HfConfigFromGguf(*f));
    (void)elm::TokenizerFromGguf(*f);
  });
  return 0;
}
