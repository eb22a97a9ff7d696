#include "kernels/kquant_kernels.h"

#include <cstdlib>
#include <string>

#include "base/dtype.h"

namespace elm {
namespace {

// Integer sums of one Q4_K/Q5_K super-block against a Q8_K block: Σ sc_j·dot_j and Σ m_j·bsum_j.
template <bool kFive, typename B>
void SumsK(const B& w, const BlockQ8K& x, int32_t* sumi, int32_t* summ) {
  int32_t s = 0, m = 0;
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, mn;
    ScaleMinK4(j, w.scales, &sc, &mn);
    const int g = j / 2, shift = 4 * (j % 2);
    int32_t dot = 0;
    for (int l = 0; l < 32; ++l) {
      int q = (w.qs[32 * g + l] >> shift) & 0xF;
      if constexpr (kFive) q += ((w.qh[l] >> j) & 1) << 4;
      dot += q * x.qs[32 * j + l];
    }
    s += sc * dot;
    m += mn * (x.bsums[2 * j] + x.bsums[2 * j + 1]);
  }
  *sumi = s;
  *summ = m;
}

template <bool kFive, typename B>
void GemmK(float* y, int64_t ldy, const BlockQ8K* x, int64_t T, const B* w, int64_t nr, int64_t K) {
  const int64_t nb = K / kQK;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < nr; ++r) {
      float acc = 0;
      for (int64_t b = 0; b < nb; ++b) {
        const B& wb = w[r * nb + b];
        const BlockQ8K& xb = x[t * nb + b];
        int32_t sumi, summ;
        SumsK<kFive>(wb, xb, &sumi, &summ);
        const float dd = F16ToF32(wb.d) * xb.d, dm = F16ToF32(wb.dmin) * xb.d;
        acc += dd * static_cast<float>(sumi) - dm * static_cast<float>(summ);
      }
      y[t * ldy + r] = acc;
    }
}

void GemmQ4K(float* y, int64_t ldy, const BlockQ8K* x, int64_t T, const BlockQ4K* w, int64_t nr,
             int64_t K) {
  GemmK<false>(y, ldy, x, T, w, nr, K);
}

void GemmQ5K(float* y, int64_t ldy, const BlockQ8K* x, int64_t T, const BlockQ5K* w, int64_t nr,
             int64_t K) {
  GemmK<true>(y, ldy, x, T, w, nr, K);
}

void GemmQ6K(float* y, int64_t ldy, const BlockQ8K* x, int64_t T, const BlockQ6K* w, int64_t nr,
             int64_t K) {
  const int64_t nb = K / kQK;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < nr; ++r) {
      float acc = 0;
      for (int64_t b = 0; b < nb; ++b) {
        const BlockQ6K& wb = w[r * nb + b];
        const BlockQ8K& xb = x[t * nb + b];
        int32_t sumi = 0;
        for (int j = 0; j < 16; ++j) {
          // Element e = 16j + i lies in half h = e / 128 at position p = e % 128: its low 4 bits
          // are nibble p / 64 of ql[64h + p % 64], its high 2 bits bits 2·(p / 32) of
          // qh[32h + p % 32].
          int32_t dot = 0;
          for (int i = 0; i < 16; ++i) {
            const int e = 16 * j + i, h = e / 128, p = e % 128;
            const int lo = (wb.ql[64 * h + p % 64] >> (4 * (p / 64))) & 0xF;
            const int hi = (wb.qh[32 * h + p % 32] >> (2 * (p / 32))) & 3;
            dot += (lo | (hi << 4)) * xb.qs[e];
          }
          sumi += wb.scales[j] * (dot - 32 * xb.bsums[j]);
        }
        acc += F16ToF32(wb.d) * xb.d * static_cast<float>(sumi);
      }
      y[t * ldy + r] = acc;
    }
}

void GemmIq4Xs(float* y, int64_t ldy, const BlockQ8K* x, int64_t T, const BlockIq4Xs* w, int64_t nr,
               int64_t K) {
  const int64_t nb = K / kQK;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < nr; ++r) {
      float acc = 0;
      for (int64_t b = 0; b < nb; ++b) {
        const BlockIq4Xs& wb = w[r * nb + b];
        const BlockQ8K& xb = x[t * nb + b];
        int32_t sumi = 0;
        for (int j = 0; j < 8; ++j) {
          const int ls =
              ((wb.scales_l[j / 2] >> 4 * (j % 2)) & 0xF) | (((wb.scales_h >> 2 * j) & 3) << 4);
          int32_t dot = 0;
          for (int i = 0; i < 16; ++i) {
            dot += kIq4nlValues[wb.qs[16 * j + i] & 0xF] * xb.qs[32 * j + i];
            dot += kIq4nlValues[wb.qs[16 * j + i] >> 4] * xb.qs[32 * j + 16 + i];
          }
          sumi += (ls - 32) * dot;
        }
        acc += F16ToF32(wb.d) * xb.d * static_cast<float>(sumi);
      }
      y[t * ldy + r] = acc;
    }
}

}  // namespace

const KquantKernels& ScalarKquantKernels() {
  static const KquantKernels k{"scalar",    GemmQ4K, GemmQ5K, GemmQ6K, GemmIq4Xs,
                               QuantizeQ8K, nullptr, nullptr, nullptr};
  return k;
}

const KquantKernels& BestKquantKernels() {
  static const KquantKernels* best = [] {
    const char* isa = std::getenv("ELM_ISA");
    if (isa && std::string(isa) == "scalar") return &ScalarKquantKernels();
    if (isa && std::string(isa) == "avx2" && Avx2KquantKernels()) return Avx2KquantKernels();
    if (const KquantKernels* k = Avx512KquantKernels()) return k;
    if (const KquantKernels* k = Avx2KquantKernels()) return k;
    if (const KquantKernels* k = NeonKquantKernels()) return k;
    return &ScalarKquantKernels();
  }();
  return *best;
}

}  // namespace elm
