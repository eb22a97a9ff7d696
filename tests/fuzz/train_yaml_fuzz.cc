// libFuzzer target for the CoreNet-style training YAML (ParseTrainConfig, what `elm train
// --config` and `elm init` read), with and without the requirement of training data, and with a
// `--set` override applied on top. Rejections must be elm::Error (fuzz_util.h).
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_util.h"
#include "train/train_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string yaml(elm_fuzz::AsText(data, size));
  elm_fuzz::ExpectOnlyElmErrors([&] {
    const elm::TrainConfig c = elm::ParseTrainConfig(yaml, "fuzz.yaml", {}, false);
    (void)c.run_dir();
    (void)c.tokens_per_step();
  });
  elm_fuzz::ExpectOnlyElmErrors(
      [&] { (void)elm::ParseTrainConfig(yaml, "fuzz.yaml", {"common.accum_freq=2"}, true); });
  return 0;
}
