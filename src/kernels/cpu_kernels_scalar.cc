// Scalar twins of every micro-kernel: the reference the SIMD tables are tested against.
#include <cstdlib>
#include <cstring>
#include <string>

#include "base/dtype.h"
#include "base/error.h"
#include "kernels/cpu_kernels.h"

namespace elm {
namespace {

void GemmBf16(float* y, int64_t ldy, const uint16_t* x, int64_t T, const uint16_t* w, int64_t nr,
              int64_t K) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < nr; ++r) {
      float acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += BF16ToF32(x[t * K + k]) * BF16ToF32(w[r * K + k]);
      y[t * ldy + r] = acc;
    }
}

void GemmF32(float* y, int64_t ldy, const float* x, int64_t T, const float* w, int64_t nr,
             int64_t K) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < nr; ++r) {
      float acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += x[t * K + k] * w[r * K + k];
      y[t * ldy + r] = acc;
    }
}

void GemmF16(float* y, int64_t ldy, const float* x, int64_t T, const uint16_t* w, int64_t nr,
             int64_t K) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < nr; ++r) {
      float acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += x[t * K + k] * F16ToF32(w[r * K + k]);
      y[t * ldy + r] = acc;
    }
}

void GemmQ8_0(float* y, int64_t ldy, const BlockQ8_0* x, int64_t T, const BlockQ8_0* w, int64_t nr,
              int64_t K) {
  const int64_t nb = K / kQBlock;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < nr; ++r) {
      float acc = 0;
      for (int64_t b = 0; b < nb; ++b) {
        const BlockQ8_0& xb = x[t * nb + b];
        const BlockQ8_0& wb = w[r * nb + b];
        int32_t s = 0;
        for (int i = 0; i < kQBlock; ++i) s += xb.q[i] * wb.q[i];
        acc += F16ToF32(xb.d) * F16ToF32(wb.d) * static_cast<float>(s);
      }
      y[t * ldy + r] = acc;
    }
}

void GemmQ4_0(float* y, int64_t ldy, const BlockQ8_0* x, int64_t T, const BlockQ4_0* w, int64_t nr,
              int64_t K) {
  const int64_t nb = K / kQBlock;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < nr; ++r) {
      float acc = 0;
      for (int64_t b = 0; b < nb; ++b) {
        const BlockQ8_0& xb = x[t * nb + b];
        const BlockQ4_0& wb = w[r * nb + b];
        int32_t s = 0;
        for (int j = 0; j < kQBlock / 2; ++j) {
          s += xb.q[j] * ((wb.nib[j] & 15) - 8);
          s += xb.q[j + kQBlock / 2] * ((wb.nib[j] >> 4) - 8);
        }
        acc += F16ToF32(xb.d) * F16ToF32(wb.d) * static_cast<float>(s);
      }
      y[t * ldy + r] = acc;
    }
}

// Packed twins: integer block dot products on the offset layouts, corrected by the block sums.
void GemmQ8_0x16(float* y, int64_t ldy, const BlockQ8_0* x, const int32_t* xsum, int64_t T,
                 const BlockQ8_0x16* w, int64_t nr, int64_t K) {
  const int64_t nb = K / kQBlock;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < nr; ++r) {
      const BlockQ8_0x16* g = w + (r / kPackRows) * nb;
      const int j = static_cast<int>(r % kPackRows);
      float acc = 0;
      for (int64_t b = 0; b < nb; ++b) {
        const BlockQ8_0& xb = x[t * nb + b];
        int32_t s = -128 * xsum[t * nb + b];
        for (int e = 0; e < kQBlock; ++e) s += xb.q[e] * g[b].q[e / 4][j][e % 4];
        acc += F16ToF32(xb.d) * F16ToF32(g[b].d[j]) * static_cast<float>(s);
      }
      y[t * ldy + r] = acc;
    }
}

void GemmQ4_0x16(float* y, int64_t ldy, const BlockQ8_0* x, const int32_t* xsum, int64_t T,
                 const BlockQ4_0x16* w, int64_t nr, int64_t K) {
  const int64_t nb = K / kQBlock;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < nr; ++r) {
      const BlockQ4_0x16* g = w + (r / kPackRows) * nb;
      const int j = static_cast<int>(r % kPackRows);
      float acc = 0;
      for (int64_t b = 0; b < nb; ++b) {
        const BlockQ8_0& xb = x[t * nb + b];
        int32_t s = -8 * xsum[t * nb + b];
        for (int e = 0; e < kQBlock / 2; ++e) {
          const uint8_t v = g[b].nib[e / 4][j][e % 4];
          s += xb.q[e] * (v & 15) + xb.q[e + kQBlock / 2] * (v >> 4);
        }
        acc += F16ToF32(xb.d) * F16ToF32(g[b].d[j]) * static_cast<float>(s);
      }
      y[t * ldy + r] = acc;
    }
}

void F32ToBf16(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = F32ToBF16(x[i]);
}

void F16ToBf16(const uint16_t* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = F32ToBF16(F16ToF32(x[i]));
}

void F16ToF32Rows(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = F16ToF32(x[i]);
}

void QuantizeRowsQ8_0(const float* x, BlockQ8_0* y, int64_t n) {
  QuantizeQ8_0(x, y, static_cast<size_t>(n));
}

}  // namespace

const CpuKernels& ScalarKernels() {
  static const CpuKernels k{"scalar",  GemmBf16,  GemmF32,      GemmF16,
                            GemmQ8_0,  GemmQ4_0,  GemmQ8_0x16,  GemmQ4_0x16,
                            F32ToBf16, F16ToBf16, F16ToF32Rows, QuantizeRowsQ8_0};
  return k;
}

const CpuKernels& BestKernels() {
  static const CpuKernels* best = [] {
    const char* isa = std::getenv("ELM_ISA");
    const std::string want = isa ? isa : "";
    if (want == "scalar") return &ScalarKernels();
    if (want == "avx2") {
      if (!Avx2Kernels()) Fail("ELM_ISA=avx2 but this CPU lacks AVX2/FMA/F16C");
      return Avx2Kernels();
    }
    if (want == "avx512") {
      if (!Avx512Kernels()) Fail("ELM_ISA=avx512 but this CPU lacks AVX-512 BF16/VNNI");
      return Avx512Kernels();
    }
    if (want == "neon") {
      if (!NeonKernels()) Fail("ELM_ISA=neon but this is not an AArch64 CPU");
      return NeonKernels();
    }
    if (!want.empty()) Fail("ELM_ISA must be scalar, avx2, avx512 or neon, got '", want, "'");
    if (const CpuKernels* k = NeonKernels()) return k;
    if (const CpuKernels* k = Avx512Kernels()) return k;
    if (const CpuKernels* k = Avx2Kernels()) return k;
    return &ScalarKernels();
  }();
  return *best;
}

}  // namespace elm
