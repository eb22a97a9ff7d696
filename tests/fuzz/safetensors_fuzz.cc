// libFuzzer target for the safetensors reader: the bytes are written to a scratch
// model.safetensors and opened as elm opens every checkpoint file (SafetensorsFile, then
// TensorStore over the folder), and each float tensor elm can compute with is widened to f32 the
// way Model::Load reads weights. Rejections must be elm::Error (fuzz_util.h).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/dtype.h"
#include "fuzz_util.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path =
      elm_fuzz::WriteScratch("st/model.safetensors", elm_fuzz::AsText(data, size));
  elm_fuzz::ExpectOnlyElmErrors([&] {
    const elm::SafetensorsFile file(path);
    for (const auto& [key, value] : file.metadata()) (void)value.size();
    std::vector<float> buf;
    for (const auto& [name, v] : file.tensors()) {
      (void)elm::ShapeString(v.shape);
      if (!v.dtype || v.numel() > (1 << 16)) continue;
      const elm::DType t = *v.dtype;
      if (t != elm::DType::kF32 && t != elm::DType::kF16 && t != elm::DType::kBF16) continue;
      buf.resize(static_cast<size_t>(v.numel()));
      elm::ToF32(t, v.data, buf.data(), buf.size());
    }
    const elm::TensorStore store(elm_fuzz::ScratchDir().string() + "/st");
    for (const auto& [name, v] : store.all()) (void)store.Get(name);
  });
  return 0;
}
