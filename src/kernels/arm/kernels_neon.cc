// NEON tier for 64-bit Arm (Apple Silicon, Graviton, …): one output at a time, each weight row
// read start to end in four 4-lane FMA chains (decoding streams every row, as on x86); int8 dot
// products through vdotq_s32 where the CPU has the dot-product extension.
// Simple on purpose — it exists so elm builds and runs natively on OpenELM's home platform; the
// tiling of the x86 tiers is the next step here.
#include "kernels/cpu_kernels.h"

#if defined(__aarch64__)
#include <arm_neon.h>

namespace elm {
namespace {

inline float32x4_t Bf16x4(const uint16_t* p) {
  return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}
inline float ScalarBf16(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}
inline float ScalarF16(uint16_t h) {
  __fp16 v;
  __builtin_memcpy(&v, &h, 2);
  return static_cast<float>(v);
}

// Widening loads of 4 elements to f32, and of one.
struct LoadF32 {
  static float32x4_t Load(const float* p) { return vld1q_f32(p); }
  static float One(const float* p) { return *p; }
};
struct LoadBf16 {
  static float32x4_t Load(const uint16_t* p) { return Bf16x4(p); }
  static float One(const uint16_t* p) { return ScalarBf16(*p); }
};
struct LoadF16 {
  static float32x4_t Load(const uint16_t* p) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
  }
  static float One(const uint16_t* p) { return ScalarF16(*p); }
};

// Σ a[k]·b[k] in four independent 4-lane FMA chains (one chain waits on the FMA latency every
// step), summed in a fixed order, then the tail.
template <typename LA, typename LB, typename TA, typename TB>
float Dot(const TA* a, const TB* b, int64_t K) {
  float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    a0 = vfmaq_f32(a0, LA::Load(a + k), LB::Load(b + k));
    a1 = vfmaq_f32(a1, LA::Load(a + k + 4), LB::Load(b + k + 4));
    a2 = vfmaq_f32(a2, LA::Load(a + k + 8), LB::Load(b + k + 8));
    a3 = vfmaq_f32(a3, LA::Load(a + k + 12), LB::Load(b + k + 12));
  }
  for (; k + 4 <= K; k += 4) a0 = vfmaq_f32(a0, LA::Load(a + k), LB::Load(b + k));
  float s = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
  for (; k < K; ++k) s += LA::One(a + k) * LB::One(b + k);
  return s;
}

template <typename LX, typename LW, typename TX, typename TW>
void Gemm(float* y, int64_t ldy, const TX* x, int64_t T, const TW* w, int64_t nr, int64_t K) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < nr; ++r) y[t * ldy + r] = Dot<LX, LW>(x + t * K, w + r * K, K);
}

void GemmF32(float* y, int64_t ldy, const float* x, int64_t T, const float* w, int64_t nr,
             int64_t K) {
  Gemm<LoadF32, LoadF32>(y, ldy, x, T, w, nr, K);
}

void GemmBf16(float* y, int64_t ldy, const uint16_t* x, int64_t T, const uint16_t* w, int64_t nr,
              int64_t K) {
  Gemm<LoadBf16, LoadBf16>(y, ldy, x, T, w, nr, K);
}

void GemmF16(float* y, int64_t ldy, const float* x, int64_t T, const uint16_t* w, int64_t nr,
             int64_t K) {
  Gemm<LoadF32, LoadF16>(y, ldy, x, T, w, nr, K);
}

// Σ a[i]·b[i] over 32 int8 pairs.
inline int32_t Dot32(const int8_t* a, int8x16_t b0, int8x16_t b1) {
#if defined(__ARM_FEATURE_DOTPROD)
  int32x4_t acc = vdotq_s32(vdupq_n_s32(0), vld1q_s8(a), b0);
  acc = vdotq_s32(acc, vld1q_s8(a + 16), b1);
  return vaddvq_s32(acc);
#else
  const int8x16_t a0 = vld1q_s8(a), a1 = vld1q_s8(a + 16);
  int32x4_t acc = vpaddlq_s16(vmull_s8(vget_low_s8(a0), vget_low_s8(b0)));
  acc = vpadalq_s16(acc, vmull_s8(vget_high_s8(a0), vget_high_s8(b0)));
  acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a1), vget_low_s8(b1)));
  acc = vpadalq_s16(acc, vmull_s8(vget_high_s8(a1), vget_high_s8(b1)));
  return vaddvq_s32(acc);
#endif
}

void GemmQ8_0(float* y, int64_t ldy, const BlockQ8_0* x, int64_t T, const BlockQ8_0* w, int64_t nr,
              int64_t K) {
  const int64_t nb = K / kQBlock;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < nr; ++r) {
      float s = 0;
      for (int64_t b = 0; b < nb; ++b) {
        const BlockQ8_0& xb = x[t * nb + b];
        const BlockQ8_0& wb = w[r * nb + b];
        const int32_t d = Dot32(xb.q, vld1q_s8(wb.q), vld1q_s8(wb.q + 16));
        s += ScalarF16(xb.d) * ScalarF16(wb.d) * static_cast<float>(d);
      }
      y[t * ldy + r] = s;
    }
}

void GemmQ4_0(float* y, int64_t ldy, const BlockQ8_0* x, int64_t T, const BlockQ4_0* w, int64_t nr,
              int64_t K) {
  const int64_t nb = K / kQBlock;
  const uint8x16_t low4 = vdupq_n_u8(0x0f);
  const int8x16_t eight = vdupq_n_s8(8);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < nr; ++r) {
      float s = 0;
      for (int64_t b = 0; b < nb; ++b) {
        const BlockQ8_0& xb = x[t * nb + b];
        const BlockQ4_0& wb = w[r * nb + b];
        const uint8x16_t packed = vld1q_u8(wb.nib);
        const int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(packed, low4)), eight);
        const int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(packed, 4)), eight);
        const int32_t d = Dot32(xb.q, lo, hi);
        s += ScalarF16(xb.d) * ScalarF16(wb.d) * static_cast<float>(d);
      }
      y[t * ldy + r] = s;
    }
}

}  // namespace

const CpuKernels* NeonKernels() {
  // clang-format off
  static const CpuKernels k{"neon",   GemmBf16, GemmF32, GemmF16, GemmQ8_0, GemmQ4_0, nullptr, nullptr,
                            ScalarKernels().f32_to_bf16, ScalarKernels().f16_to_bf16,
                            ScalarKernels().f16_to_f32, ScalarKernels().quantize_q8_0};
  // clang-format on
  return &k;  // NEON is part of every AArch64 CPU
}

}  // namespace elm

#else
namespace elm {
const CpuKernels* NeonKernels() {
  return nullptr;
}
}  // namespace elm
#endif
