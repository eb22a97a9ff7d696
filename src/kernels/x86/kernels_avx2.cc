// AVX2 + FMA + F16C tier for x86 CPUs without AVX-512 BF16/VNNI. Same contracts and layout as the
// AVX-512 file (see there); 256-bit vectors, bf16 widened to f32, int8 dots through vpmaddubsw.
// Internal linkage and no library templates inside the target region, for the same reason.
#include "kernels/cpu_kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>

namespace elm {
namespace {

inline float HSum(__m256 v) {
  const __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  __m128 s = _mm_add_ps(lo, hi);
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Widening loads of 8 elements to f32.
struct LoadF32 {
  static __m256 Load(const float* p) { return _mm256_loadu_ps(p); }
  static float One(const float* p) { return *p; }
};
struct LoadBf16 {
  static __m256 Load(const uint16_t* p) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
  }
  static float One(const uint16_t* p) {
    const unsigned bits = static_cast<unsigned>(*p) << 16;
    float f;
    __builtin_memcpy(&f, &bits, 4);
    return f;
  }
};
struct LoadF16 {
  static __m256 Load(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static float One(const uint16_t* p) { return _cvtsh_ss(*p); }
};

// y[t, r] over MR × NR with 8-lane partial sums; k tail handled element by element.
template <int MR, int NR, typename LX, typename LW, typename TX, typename TW>
void Tile(float* y, int64_t ldy, const TX* x, const TW* w, int64_t K) {
  __m256 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    __m256 wv[NR];
    for (int j = 0; j < NR; ++j) wv[j] = LW::Load(w + j * K + k);
    for (int i = 0; i < MR; ++i) {
      const __m256 xv = LX::Load(x + i * K + k);
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) {
      float s = HSum(acc[i][j]);
      for (int64_t kk = k; kk < K; ++kk) s += LX::One(x + i * K + kk) * LW::One(w + j * K + kk);
      y[i * ldy + j] = s;
    }
}

// Decoding (one activation row): each weight row read start to end with four accumulators, so a
// thread's panel is one sequential stream (as in the AVX-512 file; ~2x here over 2-row tiles).
template <typename LX, typename LW, typename TX, typename TW>
void DecodeRows(float* y, const TX* x, const TW* w, int64_t nr, int64_t K) {
  for (int64_t r = 0; r < nr; ++r) {
    const TW* wr = w + r * K;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
      a0 = _mm256_fmadd_ps(LX::Load(x + k), LW::Load(wr + k), a0);
      a1 = _mm256_fmadd_ps(LX::Load(x + k + 8), LW::Load(wr + k + 8), a1);
      a2 = _mm256_fmadd_ps(LX::Load(x + k + 16), LW::Load(wr + k + 16), a2);
      a3 = _mm256_fmadd_ps(LX::Load(x + k + 24), LW::Load(wr + k + 24), a3);
    }
    for (; k + 8 <= K; k += 8) a0 = _mm256_fmadd_ps(LX::Load(x + k), LW::Load(wr + k), a0);
    float s = HSum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; k < K; ++k) s += LX::One(x + k) * LW::One(wr + k);
    y[r] = s;
  }
}

template <typename LX, typename LW, typename TX, typename TW>
void Gemm(float* y, int64_t ldy, const TX* x, int64_t T, const TW* w, int64_t nr, int64_t K) {
  if (T == 1) return DecodeRows<LX, LW>(y, x, w, nr, K);
  constexpr int64_t kTB = 64;
  for (int64_t tb = 0; tb < T; tb += kTB) {
    const int64_t te = tb + kTB < T ? tb + kTB : T;
    for (int64_t r = 0; r < nr; r += 2) {
      const bool two = nr - r >= 2;
      for (int64_t t = tb; t < te; t += 4) {
        const int64_t m = te - t < 4 ? te - t : 4;
        float* yt = y + t * ldy + r;
        const TX* xt = x + t * K;
        const TW* wt = w + r * K;
        // clang-format off
        switch (m * 2 + (two ? 1 : 0)) {
          case 2: Tile<1, 1, LX, LW>(yt, ldy, xt, wt, K); break;
          case 3: Tile<1, 2, LX, LW>(yt, ldy, xt, wt, K); break;
          case 4: Tile<2, 1, LX, LW>(yt, ldy, xt, wt, K); break;
          case 5: Tile<2, 2, LX, LW>(yt, ldy, xt, wt, K); break;
          case 6: Tile<3, 1, LX, LW>(yt, ldy, xt, wt, K); break;
          case 7: Tile<3, 2, LX, LW>(yt, ldy, xt, wt, K); break;
          case 8: Tile<4, 1, LX, LW>(yt, ldy, xt, wt, K); break;
          default: Tile<4, 2, LX, LW>(yt, ldy, xt, wt, K); break;
        }
        // clang-format on
      }
    }
  }
}

void GemmBf16(float* y, int64_t ldy, const uint16_t* x, int64_t T, const uint16_t* w, int64_t nr,
              int64_t K) {
  Gemm<LoadBf16, LoadBf16>(y, ldy, x, T, w, nr, K);
}
void GemmF32(float* y, int64_t ldy, const float* x, int64_t T, const float* w, int64_t nr,
             int64_t K) {
  Gemm<LoadF32, LoadF32>(y, ldy, x, T, w, nr, K);
}
void GemmF16(float* y, int64_t ldy, const float* x, int64_t T, const uint16_t* w, int64_t nr,
             int64_t K) {
  Gemm<LoadF32, LoadF16>(y, ldy, x, T, w, nr, K);
}

// int8 dot of one 32-byte block pair → 8 int32 lanes: |x| · sign(x)·w through vpmaddubsw.
inline __m256i DotQ8(__m256i xq, __m256i wq) {
  const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(xq, xq), _mm256_sign_epi8(wq, xq));
  return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

void GemmQ8_0(float* y, int64_t ldy, const BlockQ8_0* x, int64_t T, const BlockQ8_0* w, int64_t nr,
              int64_t K) {
  const int64_t nb = K / kQBlock;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < nr; ++r) {
      __m256 acc = _mm256_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) {
        const BlockQ8_0& xb = x[t * nb + b];
        const BlockQ8_0& wb = w[r * nb + b];
        const __m256i d = DotQ8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.q)),
                                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb.q)));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d),
                              _mm256_set1_ps(_cvtsh_ss(xb.d) * _cvtsh_ss(wb.d)), acc);
      }
      y[t * ldy + r] = HSum(acc);
    }
}

void GemmQ4_0(float* y, int64_t ldy, const BlockQ8_0* x, int64_t T, const BlockQ4_0* w, int64_t nr,
              int64_t K) {
  const int64_t nb = K / kQBlock;
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i eight = _mm256_set1_epi8(8);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < nr; ++r) {
      __m256 acc = _mm256_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) {
        const BlockQ8_0& xb = x[t * nb + b];
        const BlockQ4_0& wb = w[r * nb + b];
        const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(wb.nib));
        const __m256i wq = _mm256_sub_epi8(
            _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), low4), eight);
        const __m256i d = DotQ8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.q)), wq);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d),
                              _mm256_set1_ps(_cvtsh_ss(xb.d) * _cvtsh_ss(wb.d)), acc);
      }
      y[t * ldy + r] = HSum(acc);
    }
}

void F16ToF32Rows(const uint16_t* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
  for (; i < n; ++i) y[i] = _cvtsh_ss(x[i]);
}

}  // namespace
}  // namespace elm

#pragma GCC pop_options

namespace elm {
const CpuKernels* Avx2Kernels() {
  // clang-format off
  static const CpuKernels k{"avx2",   GemmBf16, GemmF32, GemmF16, GemmQ8_0, GemmQ4_0, nullptr, nullptr,
                            ScalarKernels().f32_to_bf16, ScalarKernels().f16_to_bf16,
                            F16ToF32Rows, ScalarKernels().quantize_q8_0};
  // clang-format on
  // Every AVX2 + FMA CPU has F16C (Intel Haswell, AMD Piledriver onwards); clang cannot query it.
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok ? &k : nullptr;
}
}  // namespace elm

#else
namespace elm {
const CpuKernels* Avx2Kernels() {
  return nullptr;
}
}  // namespace elm
#endif
