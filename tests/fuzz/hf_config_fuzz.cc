// libFuzzer target for the HF config.json reader (LoadHfConfig, what every model folder goes
// through). An accepted config must also survive elm's own writer: ConfigToHfJson and a second
// parse, and its tensor layout must be derivable. Rejections must be elm::Error (fuzz_util.h).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "config/hf_config.h"
#include "config/tensor_layout.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = elm_fuzz::WriteScratch("config.json", elm_fuzz::AsText(data, size));
  elm::ModelConfig cfg;
  bool accepted = false;
  elm_fuzz::ExpectOnlyElmErrors([&] {
    cfg = elm::LoadHfConfig(path);
    accepted = true;
  });
  if (!accepted) return 0;
  // Past validation nothing may fail: elm wrote this config itself.
  try {
    const elm::ModelConfig again = elm::ConfigFromHfJson(elm::ConfigToHfJson(cfg), "round trip");
    (void)elm::ExpectedTensors(again);
  } catch (const std::exception& e) {
    elm_fuzz::Abort(std::string("an accepted config.json does not round-trip: ") + e.what());
  }
  return 0;
}
