#include "train/qlora_base.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <fstream>
#include <mutex>
#include <unordered_map>

#include "base/dtype.h"
#include "base/error.h"
#include "io/model_source.h"

namespace elm {

namespace {

// bitsandbytes' NF4 table (functional.py get_4bit_type("nf4")): the quantiles of N(0, 1) scaled
// to [−1, 1], with 8 positive and 7 negative levels and an exact zero.
constexpr float kNf4LevelTable[16] = {-1.0f,
                                      -0.6961928009986877f,
                                      -0.5250730514526367f,
                                      -0.39491748809814453f,
                                      -0.28444138169288635f,
                                      -0.18477343022823334f,
                                      -0.09105003625154495f,
                                      0.0f,
                                      0.07958029955625534f,
                                      0.16093020141124725f,
                                      0.24611230194568634f,
                                      0.33791524171829224f,
                                      0.44070982933044434f,
                                      0.5626170039176941f,
                                      0.7229568362236023f,
                                      1.0f};

// The index of the level nearest to v ∈ [−1, 1] (ties to the lower level, as the midpoint
// comparisons of bitsandbytes' dQuantizeNF4 do).
uint8_t QloraNearestNf4(float v) {
  uint8_t best = 0;
  for (uint8_t k = 1; k < 16; ++k) {
    const float mid = 0.5f * (kNf4LevelTable[k - 1] + kNf4LevelTable[k]);
    if (v > mid) best = k;
  }
  return best;
}

DType QloraBlockType(BaseQuant k) {
  return k == BaseQuant::kQ8_0 ? DType::kQ8_0 : DType::kQ4_0;
}

// Whether a [rows, cols] matrix can be held in `k`: Q8_0 / Q4_0 blocks lie within a row; NF4's
// run over the flattened matrix and pack two elements a byte. Throws naming the tensor.
void QloraCheckShape(const std::string& name, int64_t rows, int64_t cols, BaseQuant k) {
  if (k == BaseQuant::kNf4) {
    if (rows * cols % 2 != 0)
      Fail("QLoRA base nf4: tensor '", name, "' has an odd number of elements (", rows * cols, ")");
    return;
  }
  const auto block = static_cast<int64_t>(DTypeBlock(QloraBlockType(k)));
  if (cols % block != 0)
    Fail("QLoRA base ", BaseQuantName(k), ": tensor '", name, "' has ", cols,
         " columns, not a multiple of the ", block, "-element block");
}

bool QloraIsLayerLinear(TensorRole r) {
  return r == TensorRole::kQkv || r == TensorRole::kOut || r == TensorRole::kProj1 ||
         r == TensorRole::kProj2;
}

// The registry TrainGemm consults: slot → quantized matrix. `qlora_registered` lets the common case
// (no QLoRA run in the process) skip the lock.
std::mutex qlora_registry_mu;
std::unordered_map<const float*, const QuantizedMatrix*>& QloraRegistry() {
  static std::unordered_map<const float*, const QuantizedMatrix*> m;
  return m;
}
std::atomic<size_t> qlora_registered{0};

// Gives the pages wholly inside [p, p + n) back to the system (they read as zeros afterwards) and
// zeroes the partial pages at either end, so the slot reads as zeros throughout.
void QloraReleaseF32(float* p, size_t n) {
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto a = reinterpret_cast<uintptr_t>(p), b = a + n * sizeof(float);
  const uintptr_t lo = (a + page - 1) / page * page, hi = b / page * page;
  if (hi > lo && madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED) == 0) {
    std::memset(p, 0, lo - a);
    std::memset(reinterpret_cast<void*>(hi), 0, b - hi);
  } else {
    std::memset(p, 0, n * sizeof(float));
  }
}

size_t QloraStatusField(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const size_t klen = std::strlen(key);
  while (std::getline(f, line))
    if (line.compare(0, klen, key) == 0) return std::stoull(line.substr(klen + 1)) * 1024;  // kB
  return 0;
}

}  // namespace

BaseQuant ParseBaseQuant(const std::string& name, const std::string& key) {
  if (name == "nf4") return BaseQuant::kNf4;
  if (name == "q8_0") return BaseQuant::kQ8_0;
  if (name == "q4_0") return BaseQuant::kQ4_0;
  Fail("key '", key, "' must be nf4, q8_0 or q4_0, got '", name, "'");
}

const char* BaseQuantName(BaseQuant q) {
  switch (q) {
    case BaseQuant::kNf4:
      return "nf4";
    case BaseQuant::kQ8_0:
      return "q8_0";
    case BaseQuant::kQ4_0:
      return "q4_0";
  }
  return "?";
}

const float* Nf4Levels() {
  return kNf4LevelTable;
}

size_t QuantizedMatrix::bytes() const {
  return data.size() + absmax.size() * sizeof(float) + qabsmax.size() +
         absmax_scale.size() * sizeof(float) + (kind == BaseQuant::kNf4 ? sizeof(float) : 0);
}

QuantizedMatrix QuantizeMatrix(const float* w, int64_t rows, int64_t cols, BaseQuant kind,
                               bool double_quant) {
  QuantizedMatrix q;
  q.kind = kind;
  q.rows = rows;
  q.cols = cols;
  const auto n = static_cast<size_t>(rows * cols);
  if (kind != BaseQuant::kNf4) {
    q.double_quant = false;
    q.data.resize(DTypeBytes(QloraBlockType(kind), n));
    FromF32(QloraBlockType(kind), w, q.data.data(), n);
    return q;
  }
  q.double_quant = double_quant;
  ELM_CHECK(n % 2 == 0);
  // Blocks run over the flattened matrix, across rows, as in bitsandbytes; the last may be short.
  const size_t nb = (n + kNf4Block - 1) / kNf4Block;
  std::vector<float> absmax(nb);
  q.data.resize(n / 2);
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
  for (int64_t b = 0; b < static_cast<int64_t>(nb); ++b) {
    const float* x = w + b * kNf4Block;
    const int64_t len = std::min<int64_t>(kNf4Block, static_cast<int64_t>(n) - b * kNf4Block);
    float m = 0;
    for (int64_t i = 0; i < len; ++i) m = std::max(m, std::fabs(x[i]));
    absmax[b] = m;
    const float inv = m > 0 ? 1.0f / m : 0.0f;
    uint8_t* out = q.data.data() + b * kNf4Block / 2;
    for (int64_t i = 0; i < len; i += 2)
      out[i / 2] =
          static_cast<uint8_t>(QloraNearestNf4(x[i] * inv) << 4 | QloraNearestNf4(x[i + 1] * inv));
  }
  if (!double_quant) {
    q.absmax = std::move(absmax);
    return q;
  }
  double sum = 0;
  for (float a : absmax) sum += a;
  q.absmax_offset = nb > 0 ? static_cast<float>(sum / static_cast<double>(nb)) : 0.0f;
  const size_t ns = (nb + kNf4AbsmaxBlock - 1) / kNf4AbsmaxBlock;
  q.absmax_scale.resize(ns);
  q.qabsmax.resize(nb);
  for (size_t s = 0; s < ns; ++s) {
    const size_t b0 = s * kNf4AbsmaxBlock, b1 = std::min(nb, b0 + kNf4AbsmaxBlock);
    float m = 0;
    for (size_t b = b0; b < b1; ++b) m = std::max(m, std::fabs(absmax[b] - q.absmax_offset));
    q.absmax_scale[s] = m / 127.0f;
    const float inv = m > 0 ? 127.0f / m : 0.0f;
    for (size_t b = b0; b < b1; ++b) {
      const float v = std::nearbyint((absmax[b] - q.absmax_offset) * inv);
      q.qabsmax[b] = static_cast<int8_t>(std::clamp(v, -127.0f, 127.0f));
    }
  }
  return q;
}

// NF4 block b's absmax (stored, or recovered from its 8-bit code under double quantization).
static float QloraNf4BlockMax(const QuantizedMatrix& q, int64_t b) {
  return q.double_quant ? static_cast<float>(q.qabsmax[b]) * q.absmax_scale[b / kNf4AbsmaxBlock] +
                              q.absmax_offset
                        : q.absmax[b];
}

void DequantizeMatrix(const QuantizedMatrix& q, float* out) {
  const auto n = static_cast<size_t>(q.rows * q.cols);
  if (q.kind != BaseQuant::kNf4) {
    // Row by row in parallel: each row is whole blocks (checked at quantization).
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
    for (int64_t r = 0; r < q.rows; ++r) DequantizeRows(q, r, 1, out + r * q.cols);
    return;
  }
  const auto nb = static_cast<int64_t>((n + kNf4Block - 1) / kNf4Block);
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
  for (int64_t b = 0; b < nb; ++b) {
    const float m = QloraNf4BlockMax(q, b);
    const int64_t len = std::min<int64_t>(kNf4Block, static_cast<int64_t>(n) - b * kNf4Block);
    const uint8_t* in = q.data.data() + b * kNf4Block / 2;
    float* o = out + b * kNf4Block;
    for (int64_t i = 0; i < len; i += 2) {
      o[i] = kNf4LevelTable[in[i / 2] >> 4] * m;
      o[i + 1] = kNf4LevelTable[in[i / 2] & 15] * m;
    }
  }
}

void DequantizeRows(const QuantizedMatrix& q, int64_t row0, int64_t count, float* out) {
  ELM_CHECK(row0 >= 0 && count >= 0 && row0 + count <= q.rows);
  if (q.kind != BaseQuant::kNf4) {
    const DType t = QloraBlockType(q.kind);
    const size_t row_bytes = DTypeBytes(t, static_cast<size_t>(q.cols));
    for (int64_t r = 0; r < count; ++r)
      ToF32(t, q.data.data() + static_cast<size_t>(row0 + r) * row_bytes, out + r * q.cols,
            static_cast<size_t>(q.cols));
    return;
  }
  // Element e of the flattened matrix: nibble e of the data (high first), block e / 64's absmax.
  // A row may start or end inside a block, so the range is walked block piece by block piece.
  const int64_t e0 = row0 * q.cols, e1 = (row0 + count) * q.cols;
  for (int64_t e = e0; e < e1;) {
    const int64_t b = e / kNf4Block, stop = std::min(e1, (b + 1) * kNf4Block);
    const float m = QloraNf4BlockMax(q, b);
    for (; e < stop; ++e) {
      const uint8_t byte = q.data[e / 2];
      out[e - e0] = kNf4LevelTable[e % 2 == 0 ? byte >> 4 : byte & 15] * m;
    }
  }
}

const QuantizedMatrix* FindQuantizedWeight(const float* w) {
  if (qlora_registered.load(std::memory_order_acquire) == 0) return nullptr;
  std::lock_guard<std::mutex> lock(qlora_registry_mu);
  auto it = QloraRegistry().find(w);
  return it == QloraRegistry().end() ? nullptr : it->second;
}

void QuantizedBase::CheckShapes(const ParamSet& ps) const {
  for (const ParamTensor& t : ps.tensors())
    if (QloraIsLayerLinear(t.spec.role))
      QloraCheckShape(t.spec.name, t.spec.shape[0], t.spec.shape[1], kind_);
}

void QuantizedBase::Hold(const ParamTensor& t, float* slot, const float* w, bool double_quant) {
  auto q = std::make_unique<QuantizedMatrix>(
      QuantizeMatrix(w, t.spec.shape[0], t.spec.shape[1], kind_, double_quant));
  f32_bytes_ += t.numel * sizeof(float);
  {
    std::lock_guard<std::mutex> lock(qlora_registry_mu);
    QloraRegistry()[slot] = q.get();
  }
  qlora_registered.fetch_add(1, std::memory_order_release);
  mats_.emplace_back(slot, std::move(q));
}

QuantizedBase::QuantizedBase(ParamSet& ps, BaseQuant kind, bool double_quant) : kind_(kind) {
  CheckShapes(ps);
  for (const ParamTensor& t : ps.tensors()) {
    if (!QloraIsLayerLinear(t.spec.role)) continue;
    float* p = ps.params.data() + t.offset;
    Hold(t, p, p, double_quant);
    QloraReleaseF32(p, t.numel);
  }
}

QuantizedBase::QuantizedBase(ParamSet& ps, const ModelSource& src, BaseQuant kind,
                             bool double_quant)
    : kind_(kind) {
  CheckShapes(ps);
  try {
    LoadParams(
        ps, src, [](const ParamTensor& t) { return QloraIsLayerLinear(t.spec.role); },
        [&](const ParamTensor& t, const float* w) {
          Hold(t, ps.params.data() + t.offset, w, double_quant);
        });
  } catch (...) {
    Unregister();  // the destructor does not run for a constructor that throws
    throw;
  }
}

QuantizedBase::~QuantizedBase() {
  Unregister();
}

void QuantizedBase::Unregister() {
  std::lock_guard<std::mutex> lock(qlora_registry_mu);
  for (const auto& [p, q] : mats_) {
    QloraRegistry().erase(p);
    qlora_registered.fetch_sub(1, std::memory_order_release);
  }
  mats_.clear();
}

size_t QuantizedBase::quantized_bytes() const {
  size_t s = 0;
  for (const auto& [p, q] : mats_) s += q->bytes();
  return s;
}

void RoundBaseThroughQuant(ParamSet& ps, BaseQuant kind, bool double_quant) {
  for (const ParamTensor& t : ps.tensors()) {
    if (!QloraIsLayerLinear(t.spec.role)) continue;
    float* p = ps.params.data() + t.offset;
    const int64_t rows = t.spec.shape[0], cols = t.spec.shape[1];
    QloraCheckShape(t.spec.name, rows, cols, kind);
    DequantizeMatrix(QuantizeMatrix(p, rows, cols, kind, double_quant), p);
  }
}

size_t ResidentBytes() {
  return QloraStatusField("VmRSS:");
}
size_t PeakResidentBytes() {
  return QloraStatusField("VmHWM:");
}
void ResetPeakResident() {
  // Linux ≥ 4.0: writing 5 to clear_refs resets VmHWM to the current RSS.
  std::ofstream f("/proc/self/clear_refs");
  if (f) f << "5";
}

}  // namespace elm
