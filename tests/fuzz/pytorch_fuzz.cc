// libFuzzer target for the PyTorch .pt reader (docs/formats.md, "PyTorch .pt checkpoints"): a zip
// archive ("PK" first) is opened as elm opens a checkpoint (PyTorchCheckpoint: the zip directory,
// the safe unpickler over data.pkl, every storage and view checked), then read as CoreNet's
// layouts (FindCoreNetStateDict with both weight choices, ReadCoreNetTrainingState) and each
// tensor viewed (gathered when strided, up to a size); anything else goes to the unpickler
// alone. Rejections must be elm::Error (fuzz_util.h).
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_util.h"
#include "io/corenet_checkpoint.h"
#include "io/pytorch_checkpoint.h"
#include "io/pytorch_pickle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  elm_fuzz::ExpectOnlyElmErrors([&] {
    if (size < 2 || data[0] != 'P' || data[1] != 'K') {
      const elm::Pickle p(data, size, "fuzz.pkl");
      for (size_t i = 0; i < p.size(); ++i) (void)p.Describe(i);
      return;
    }
    const elm::PyTorchCheckpoint ckpt(data, size, "fuzz.pt");
    const elm::Pickle& p = ckpt.pickle();
    for (size_t i = 0; i < p.size(); ++i) {
      const elm::PyValue& v = p.at(i);
      if (v.kind != elm::PyValue::Kind::kTensor || ckpt.CopyBytes(v) > (1 << 20)) continue;
      const elm::TensorView view = ckpt.View(v, "t");
      volatile uint8_t sink = 0;
      const auto* b = static_cast<const uint8_t*>(view.data);
      for (size_t k = 0; k < view.nbytes; k += 64) sink = sink + b[k];
      if (view.nbytes > 0) sink = sink + b[view.nbytes - 1];
    }
    (void)elm::ReadCoreNetTrainingState(ckpt);
    for (auto w : {elm::CoreNetWeights::kModel, elm::CoreNetWeights::kEma}) {
      try {
        (void)elm::FindCoreNetStateDict(ckpt, w);
      } catch (const elm::Error& e) {
        if (std::string(e.what()).rfind("internal error:", 0) == 0) throw;
      }
    }
  });
  return 0;
}
