#include "io/mlx_quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/error.h"
#include "base/mmap_file.h"

namespace elm {
namespace {

float LoadScalar(DType t, const void* base, int64_t i) {
  float v;
  ToF32(t, static_cast<const uint8_t*>(base) + static_cast<size_t>(i) * DTypeSize(t), &v, 1);
  return v;
}

// Rounds through the storage type and stores; returns the value as stored.
float StoreScalar(DType t, void* base, int64_t i, float v) {
  uint8_t* p = static_cast<uint8_t*>(base) + static_cast<size_t>(i) * DTypeSize(t);
  FromF32(t, &v, p, 1);
  float back;
  ToF32(t, p, &back, 1);
  return back;
}

}  // namespace

std::optional<MlxQuantization> MlxQuantizationOf(const nlohmann::json& config,
                                                 const std::string& origin) {
  const auto it = config.find("quantization");
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (!it->is_object()) Fail(origin, ": field 'quantization' must be an object");
  MlxQuantization q;
  for (const char* key : {"bits", "group_size"}) {
    const auto v = it->find(key);
    if (v == it->end() || !v->is_number_integer())
      Fail(origin, ": field 'quantization.", key, "' must be an integer");
  }
  q.bits = (*it)["bits"].get<int>();
  q.group_size = (*it)["group_size"].get<int>();
  CheckMlxQuantization(q, origin);
  return q;
}

std::optional<MlxQuantization> MlxQuantizationOfFile(const std::string& config_path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ReadTextFile(config_path));
  } catch (const nlohmann::json::exception& e) {
    Fail(config_path, ": not valid JSON: ", e.what());
  }
  return MlxQuantizationOf(j, config_path);
}

void CheckMlxQuantization(const MlxQuantization& q, const std::string& origin) {
  if (q.bits != 2 && q.bits != 4 && q.bits != 8)
    Fail(origin, ": MLX quantization bits ", q.bits, " not supported (2, 4 or 8)");
  if (q.group_size != 32 && q.group_size != 64 && q.group_size != 128)
    Fail(origin, ": MLX quantization group size ", q.group_size, " not supported (32, 64, 128)");
}

void MlxQuantizeRow(const float* w, int64_t cols, const MlxQuantization& q, DType scale_type,
                    uint32_t* packed, void* scales, void* biases) {
  const int64_t gs = q.group_size;
  const uint32_t n_bins = (1u << q.bits) - 1;
  const int per_word = 32 / q.bits;
  std::fill(packed, packed + cols / per_word, 0u);
  for (int64_t g = 0; g < cols / gs; ++g) {
    const float* x = w + g * gs;
    float lo = x[0], hi = x[0];
    for (int64_t j = 1; j < gs; ++j) {
      lo = std::min(lo, x[j]);
      hi = std::max(hi, x[j]);
    }
    const bool low_edge = std::fabs(lo) > std::fabs(hi);
    float scale = std::max((hi - lo) / static_cast<float>(n_bins), 1e-7f);
    if (!low_edge) scale = -scale;  // count down from the max
    const float edge = low_edge ? lo : hi;
    const float q0 = std::nearbyint(edge / scale);
    float bias = 0.0f;
    if (q0 != 0.0f) {
      scale = edge / q0;
      bias = edge;
    }
    scale = StoreScalar(scale_type, scales, g, scale);
    bias = StoreScalar(scale_type, biases, g, bias);
    for (int64_t j = 0; j < gs; ++j) {
      const float v = std::nearbyint((x[j] - bias) / scale);
      const auto qi = static_cast<uint32_t>(std::clamp(v, 0.0f, static_cast<float>(n_bins)));
      const int64_t e = g * gs + j;
      packed[e / per_word] |= qi << ((e % per_word) * q.bits);
    }
  }
}

void MlxDequantizeRow(const uint32_t* packed, const void* scales, const void* biases,
                      DType scale_type, int64_t cols, const MlxQuantization& q, float* out) {
  const int per_word = 32 / q.bits;
  const uint32_t mask = (1u << q.bits) - 1;
  for (int64_t g = 0; g < cols / q.group_size; ++g) {
    const float s = LoadScalar(scale_type, scales, g), b = LoadScalar(scale_type, biases, g);
    for (int64_t j = g * q.group_size; j < (g + 1) * q.group_size; ++j) {
      uint32_t word;  // memcpy: the packed words may sit at any offset in a mapped file
      std::memcpy(&word, packed + j / per_word, sizeof word);
      const uint32_t v = (word >> ((j % per_word) * q.bits)) & mask;
      out[j] = s * static_cast<float>(v) + b;
    }
  }
}

MlxDequantizedStore::MlxDequantizedStore(const TensorStore& store, const MlxQuantization& q)
    : store_(store), q_(q) {}

bool MlxDequantizedStore::IsCompanion(const std::string& name) {
  return std::string_view(name).ends_with(".scales") || std::string_view(name).ends_with(".biases");
}

const TensorView* MlxDequantizedStore::Find(const std::string& name) {
  if (auto it = cache_.find(name); it != cache_.end()) return &it->second.first;
  const TensorView* w = store_.Find(name);
  if (w == nullptr || w->dtype_name != "U32") return nullptr;
  const std::string base =
      name.substr(0, name.size() - (std::string_view(name).ends_with(".weight") ? 7 : 0));
  const std::string& o = store_.origin();
  const TensorView* s = store_.Find(base + ".scales");
  const TensorView* b = store_.Find(base + ".biases");
  if (s == nullptr || b == nullptr)
    Fail(o, ": tensor '", name, "' is U32 (MLX-quantized) but '", base, ".scales' or '", base,
         ".biases' is missing");
  if (w->shape.size() != 2 || s->shape.size() != 2 || s->shape != b->shape ||
      s->shape[0] != w->shape[0])
    Fail(o, ": MLX-quantized tensor '", name, "' has inconsistent weight/scales/biases shapes");
  if (!s->dtype || !b->dtype || *s->dtype != *b->dtype || DTypeBlock(*s->dtype) != 1)
    Fail(o, ": '", base, ".scales' and '.biases' must share one float type (F32, F16, BF16)");
  const int64_t rows = w->shape[0], cols = w->shape[1] * 32 / q_.bits;
  if (cols != s->shape[1] * q_.group_size)
    Fail(o, ": MLX-quantized tensor '", name, "' packs ", cols, " columns but its scales cover ",
         s->shape[1] * q_.group_size, " (bits ", q_.bits, ", group size ", q_.group_size, ")");
  auto& entry = cache_[name];
  entry.second.resize(static_cast<size_t>(rows * cols));
  const auto* packed = static_cast<const uint32_t*>(w->data);
  const size_t sb_row = static_cast<size_t>(s->shape[1]) * DTypeSize(*s->dtype);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    MlxDequantizeRow(packed + r * w->shape[1], static_cast<const uint8_t*>(s->data) + r * sb_row,
                     static_cast<const uint8_t*>(b->data) + r * sb_row, *s->dtype, cols, q_,
                     entry.second.data() + r * cols);
  TensorView& v = entry.first;
  v.name = name;
  v.dtype_name = "F32";
  v.dtype = DType::kF32;
  v.shape = {rows, cols};
  v.data = entry.second.data();
  v.nbytes = entry.second.size() * sizeof(float);
  store_.Evict(*w);
  return &v;
}

void MlxDequantizedStore::Release(const std::string& name) {
  cache_.erase(name);
}

}  // namespace elm
