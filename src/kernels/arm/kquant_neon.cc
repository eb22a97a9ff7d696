// NEON decode kernels for the K-quant types (kernels/kquant_kernels.h): each sub-block's dot
// product of quants and Q8_K activations in 16-byte vectors (sdot where the CPU has the dot-product
// extension, widening multiplies otherwise), reduced to an integer and scaled exactly as the scalar
// twin does, so the results equal the scalar table's. Tested under qemu-aarch64
// (tests/cross/check_neon.sh).
#include "kernels/kquant_kernels.h"

#if defined(__aarch64__)

#include <arm_neon.h>

#include "base/dtype.h"

namespace elm {
namespace {

// Σ a_i·b_i over 16 int8 pairs, as 4 int32 partial sums added to acc (each product ≤ 127·128, two
// per int16 lane before widening: no overflow).
inline int32x4_t Dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD)
  return vdotq_s32(acc, a, b);
#else
  const int16x8_t p = vmull_s8(vget_low_s8(a), vget_low_s8(b));
  const int16x8_t q = vmull_high_s8(a, b);
  return vpadalq_s16(vpadalq_s16(acc, p), q);
#endif
}

inline int8x16_t Ld(const int8_t* p) {
  return vld1q_s8(p);
}

// Σ sc_j·dot_j and Σ m_j·bsum pairs of one Q4_K/Q5_K block (the scalar twin's integer sums).
template <bool kFive, typename B>
void SumsKNeon(const B& w, const BlockQ8K& x, int32_t* sumi, int32_t* summ) {
  const uint8x16_t m4 = vdupq_n_u8(0x0F), b4 = vdupq_n_u8(0x10);
  uint8x16_t qh[2] = {vdupq_n_u8(0), vdupq_n_u8(0)};
  if constexpr (kFive) {
    qh[0] = vld1q_u8(w.qh);
    qh[1] = vld1q_u8(w.qh + 16);
  }
  int32_t s = 0, m = 0;
  for (int g = 0; g < 4; ++g) {
    for (int half = 0; half < 2; ++half) {  // sub-block j = 2g + half: low or high nibbles
      const int j = 2 * g + half;
      int32x4_t acc = vdupq_n_s32(0);
      for (int c = 0; c < 2; ++c) {
        const uint8x16_t raw = vld1q_u8(w.qs + 32 * g + 16 * c);
        uint8x16_t q = half ? vshrq_n_u8(raw, 4) : vandq_u8(raw, m4);
        if constexpr (kFive)
          q = vorrq_u8(q, vandq_u8(vtstq_u8(qh[c], vdupq_n_u8(static_cast<uint8_t>(1 << j))), b4));
        acc = Dot16(acc, vreinterpretq_s8_u8(q), Ld(x.qs + 32 * j + 16 * c));
      }
      uint8_t sc, mn;
      ScaleMinK4(j, w.scales, &sc, &mn);
      s += sc * vaddvq_s32(acc);
      m += mn * (x.bsums[2 * j] + x.bsums[2 * j + 1]);
    }
  }
  *sumi = s;
  *summ = m;
}

template <bool kFive, typename B>
void GemmKNeon(float* y, int64_t ldy, const BlockQ8K* x, int64_t T, const B* w, int64_t nr,
               int64_t K) {
  const int64_t nb = K / kQK;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < nr; ++r) {
      float acc = 0;
      for (int64_t b = 0; b < nb; ++b) {
        const B& wb = w[r * nb + b];
        const BlockQ8K& xb = x[t * nb + b];
        int32_t sumi, summ;
        SumsKNeon<kFive>(wb, xb, &sumi, &summ);
        const float dd = F16ToF32(wb.d) * xb.d, dm = F16ToF32(wb.dmin) * xb.d;
        acc += dd * static_cast<float>(sumi) - dm * static_cast<float>(summ);
      }
      y[t * ldy + r] = acc;
    }
}

void GemmQ4KNeon(float* y, int64_t ldy, const BlockQ8K* x, int64_t T, const BlockQ4K* w, int64_t nr,
                 int64_t K) {
  GemmKNeon<false>(y, ldy, x, T, w, nr, K);
}

void GemmQ5KNeon(float* y, int64_t ldy, const BlockQ8K* x, int64_t T, const BlockQ5K* w, int64_t nr,
                 int64_t K) {
  GemmKNeon<true>(y, ldy, x, T, w, nr, K);
}

// Q6_K: 16 elements p = 16c .. 16c + 15 of half h: low 4 bits from nibble c / 4 of
// ql[64h + 16(c % 4) ..], high 2 bits from bits 2·(c / 2) of qh[32h + 16(c % 2) ..]; sub-block
// 8h + c.
void GemmQ6KNeon(float* y, int64_t ldy, const BlockQ8K* x, int64_t T, const BlockQ6K* w, int64_t nr,
                 int64_t K) {
  const int64_t nb = K / kQK;
  const uint8x16_t m4 = vdupq_n_u8(0x0F), m2 = vdupq_n_u8(0x03);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < nr; ++r) {
      float acc = 0;
      for (int64_t b = 0; b < nb; ++b) {
        const BlockQ6K& wb = w[r * nb + b];
        const BlockQ8K& xb = x[t * nb + b];
        int32_t sumi = 0;
        for (int h = 0; h < 2; ++h)
          for (int c = 0; c < 8; ++c) {
            const uint8x16_t ql = vld1q_u8(wb.ql + 64 * h + 16 * (c % 4));
            const uint8x16_t lo = c < 4 ? vandq_u8(ql, m4) : vshrq_n_u8(ql, 4);
            const uint8x16_t qh = vld1q_u8(wb.qh + 32 * h + 16 * (c % 2));
            const uint8x16_t hi =
                vandq_u8(vshlq_u8(qh, vdupq_n_s8(static_cast<int8_t>(-2 * (c / 2)))), m2);
            const uint8x16_t q = vorrq_u8(lo, vshlq_n_u8(hi, 4));
            const int j = 8 * h + c;
            const int32_t dot =
                vaddvq_s32(Dot16(vdupq_n_s32(0), vreinterpretq_s8_u8(q), Ld(xb.qs + 16 * j)));
            sumi += wb.scales[j] * (dot - 32 * xb.bsums[j]);
          }
        acc += F16ToF32(wb.d) * xb.d * static_cast<float>(sumi);
      }
      y[t * ldy + r] = acc;
    }
}

void GemmIq4XsNeon(float* y, int64_t ldy, const BlockQ8K* x, int64_t T, const BlockIq4Xs* w,
                   int64_t nr, int64_t K) {
  const int64_t nb = K / kQK;
  const int8x16_t table = vld1q_s8(kIq4nlValues);
  const uint8x16_t m4 = vdupq_n_u8(0x0F);
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
          const uint8x16_t q = vld1q_u8(wb.qs + 16 * j);
          int32x4_t d =
              Dot16(vdupq_n_s32(0), vqtbl1q_s8(table, vandq_u8(q, m4)), Ld(xb.qs + 32 * j));
          d = Dot16(d, vqtbl1q_s8(table, vshrq_n_u8(q, 4)), Ld(xb.qs + 32 * j + 16));
          sumi += (ls - 32) * vaddvq_s32(d);
        }
        acc += F16ToF32(wb.d) * xb.d * static_cast<float>(sumi);
      }
      y[t * ldy + r] = acc;
    }
}

// QuantizeQ8K (base/kquant.h) 4 floats at a time, with the same bytes: fmaxnm skips NaNs as the
// scalar `a > amax` does, the first value of largest magnitude gives the signed maximum, the
// products iscale·x are the same f32 multiplications, fcvtns rounds to nearest even as nearbyint
// does in the default rounding mode, and the two narrowing moves truncate to int8 as the cast does.
void QuantizeQ8KNeon(const float* x, BlockQ8K* out, size_t n) {
  for (size_t b = 0; b < n / kQK; ++b, x += kQK) {
    BlockQ8K& o = out[b];
    float32x4_t m = vdupq_n_f32(0.0f);
    for (int i = 0; i < kQK; i += 4) m = vmaxnmq_f32(m, vabsq_f32(vld1q_f32(x + i)));
    const float amax = vmaxnmvq_f32(m);
    if (amax == 0) {
      __builtin_memset(&o, 0, sizeof(o));
      continue;
    }
    float max = 0;
    for (int i = 0; i < kQK; ++i)
      if (__builtin_fabsf(x[i]) == amax) {
        max = x[i];
        break;
      }
    const float iscale = -127.0f / max;
    const float32x4_t s = vdupq_n_f32(iscale);
    for (int j = 0; j < kQK / 16; ++j) {
      int16x8_t h[2];
      for (int k = 0; k < 2; ++k) {
        int32x4_t v[2];
        for (int e = 0; e < 2; ++e)
          v[e] = vminq_s32(vcvtnq_s32_f32(vmulq_f32(s, vld1q_f32(x + 16 * j + 8 * k + 4 * e))),
                           vdupq_n_s32(127));
        h[k] = vcombine_s16(vmovn_s32(v[0]), vmovn_s32(v[1]));
      }
      const int8x16_t q = vcombine_s8(vmovn_s16(h[0]), vmovn_s16(h[1]));
      vst1q_s8(o.qs + 16 * j, q);
      o.bsums[j] = static_cast<int16_t>(vaddlvq_s8(q));
    }
    o.d = 1.0f / iscale;
  }
}

}  // namespace

const KquantKernels* NeonKquantKernels() {
  static const KquantKernels k{"neon",      GemmQ4KNeon,   GemmQ5KNeon,
                               GemmQ6KNeon, GemmIq4XsNeon, QuantizeQ8KNeon,
                               nullptr,     nullptr,       nullptr};
  return &k;
}

}  // namespace elm

#else

namespace elm {
const KquantKernels* NeonKquantKernels() {
  return nullptr;
}
}  // namespace elm

#endif
