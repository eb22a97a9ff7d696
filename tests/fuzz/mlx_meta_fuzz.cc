// libFuzzer target for an mlx-lm folder's metadata: config.json's "quantization" entry
// (MlxQuantizationOfFile) and the quantized matrices it describes (MlxDequantizedStore over the
// folder's model.safetensors), then the whole folder as `elm` opens it (OpenModelSource).
// Input: config.json text, a NUL byte, then the model.safetensors bytes (no NUL: an empty
// safetensors). Rejections must be elm::Error (fuzz_util.h).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_util.h"
#include "io/mlx_quant.h"
#include "io/model_source.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in = elm_fuzz::AsText(data, size);
  const size_t nul = in.find('\0');
  const std::string config = elm_fuzz::WriteScratch("mlx/config.json", in.substr(0, nul));
  elm_fuzz::WriteScratch("mlx/model.safetensors",
                         nul == std::string_view::npos ? "" : in.substr(nul + 1));
  const std::string dir = elm_fuzz::ScratchDir().string() + "/mlx";
  elm_fuzz::ExpectOnlyElmErrors([&] {
    const auto q = elm::MlxQuantizationOfFile(config);
    if (!q) return;
    const elm::TensorStore store(dir);
    elm::MlxDequantizedStore mlx(store, *q);
    for (const auto& [name, view] : store.all()) {
      if (elm::MlxDequantizedStore::IsCompanion(name)) continue;
      if (const elm::TensorView* v = mlx.Find(name)) {
        volatile float sink = 0;
        for (size_t i = 0; i < v->nbytes / sizeof(float); ++i)
          sink = sink + static_cast<const float*>(v->data)[i];
        mlx.Release(name);
      }
    }
  });
  elm_fuzz::ExpectOnlyElmErrors([&] {
    elm::SourceOptions opt;
    opt.for_conversion = false;
    const elm::ModelSource src = elm::OpenModelSource(dir, opt);
    for (size_t i = 0; i < src.tensors.size(); ++i) {
      (void)src.Fetch(i);
      src.Release(i);
    }
  });
  return 0;
}
