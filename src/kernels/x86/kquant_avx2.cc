// AVX2 decode kernels for the K-quant types (kernels/kquant_kernels.h): 4-, 5- and 6-bit quants
// (unsigned) times Q8_K activations through vpmaddubsw, IQ4_XS's signed levels through a vpshufb
// table lookup and the sign trick. Integer sums per super-block are exact, scaled into f32 lanes
// that are summed once per row.
// Internal linkage inside the target region, as in kernels_avx2.cc.
#include "kernels/kquant_kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>

namespace elm {
namespace {

inline float Half(uint16_t h) {
  return _cvtsh_ss(h);
}

inline __m256i Load(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}

// The 8 six-bit scales and 8 six-bit minimums of a Q4_K/Q5_K block (ScaleMinK4 for j = 0..7)
// as bytes 0..7 and 8..15 of a register, four at a time in 32-bit words: words w0 and w1 of the 12
// bytes hold scales 0-3 and minimums 0-3 in their low 6 bits and the top 2 bits of
// scales/minimums 4-7 in their high 2 bits; w2 holds the low 4 bits of scales 4-7 (low nibbles)
// and minimums 4-7. So the four output words are w0 & 0x3f, (w2 & 0x0f) | (w0's top 2 bits of
// each byte, at bits 4..5), w1 & 0x3f and ((w2 >> 4) & 0x0f) | (w1's top bits), computed in
// registers. The 16-byte load of the 12 scale bytes (offset 4 of the 144- or 176-byte block)
// stays inside the block.
inline __m128i UnpackScalesMins(const uint8_t* packed) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(packed));
  const __m128i a = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 0));  // w0 w2 w1 w2
  const __m128i b = _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 1, 0, 0));  // w0 w0 w1 w1
  const __m128i low = _mm_and_si128(_mm_srlv_epi32(a, _mm_setr_epi32(0, 0, 0, 4)),
                                    _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
  const __m128i top =
      _mm_and_si128(_mm_srli_epi32(b, 2), _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
  return _mm_or_si128(low, top);
}

inline float HSumF(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// pshufb controls that spread int16 word j of each 128-bit lane over the whole lane.
struct WordSpread {
  __m256i m[8];
  WordSpread() {
    for (int j = 0; j < 8; ++j)
      m[j] = _mm256_set1_epi16(static_cast<int16_t>((2 * j + 1) << 8 | 2 * j));
  }
};

template <bool kFive, typename B>
void GemmK(float* y, int64_t ldy, const BlockQ8K* x, int64_t T, const B* w, int64_t nr, int64_t K) {
  const int64_t nb = K / kQK;
  const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
  const WordSpread spread;
  for (int64_t r = 0; r < nr; ++r)
    for (int64_t t = 0; t < T; ++t) {
      // Per block: Σ sc_j·dot_j in 8 int32 lanes, scaled into 8 f32 lanes; the minimums' term
      // in 4 f32 lanes. Summed across lanes once per row.
      __m256 acc = _mm256_setzero_ps();
      __m128 accm = _mm_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) {
        const B& wb = w[r * nb + b];
        const BlockQ8K& xb = x[t * nb + b];
        // 8 scales, then 8 minimums, as int16.
        const __m256i s16 = _mm256_cvtepu8_epi16(UnpackScalesMins(wb.scales));
        const __m256i scales = _mm256_permute2x128_si256(s16, s16, 0x00);  // sc0..7 in both lanes
        __m256i sum = _mm256_setzero_si256();
        __m256i qh = _mm256_setzero_si256();
        if constexpr (kFive) qh = Load(wb.qh);
        for (int g = 0; g < 4; ++g) {
          const __m256i q = Load(wb.qs + 32 * g);
          __m256i lo = _mm256_and_si256(q, m4);
          __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
          if constexpr (kFive) {
            lo = _mm256_or_si256(
                lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * g), one), 4));
            hi = _mm256_or_si256(
                hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * g + 1), one), 4));
          }
          const __m256i p0 = _mm256_maddubs_epi16(lo, Load(xb.qs + 64 * g));
          const __m256i p1 = _mm256_maddubs_epi16(hi, Load(xb.qs + 64 * g + 32));
          sum = _mm256_add_epi32(
              sum, _mm256_madd_epi16(p0, _mm256_shuffle_epi8(scales, spread.m[2 * g])));
          sum = _mm256_add_epi32(
              sum, _mm256_madd_epi16(p1, _mm256_shuffle_epi8(scales, spread.m[2 * g + 1])));
        }
        // Σ_j m_j·(bsum_2j + bsum_2j+1): pairwise sums of the 16 bsums against the 8 minimums.
        const __m256i bs = Load(xb.bsums);
        const __m128i pairs =
            _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
        const __m128i pm = _mm_madd_epi16(_mm256_extracti128_si256(s16, 1), pairs);
        const float dd = Half(wb.d) * xb.d, dm = Half(wb.dmin) * xb.d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dd), _mm256_cvtepi32_ps(sum), acc);
        accm = _mm_fmadd_ps(_mm_set1_ps(dm), _mm_cvtepi32_ps(pm), accm);
      }
      __m128 m = _mm_add_ps(accm, _mm_movehl_ps(accm, accm));
      m = _mm_add_ss(m, _mm_movehdup_ps(m));
      y[t * ldy + r] = HSumF(acc) - _mm_cvtss_f32(m);
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

// pshufb controls for Q6_K: word 2k of each lane over the low lane, word 2k + 1 over the high one.
struct PairSpread {
  __m256i m[4];
  PairSpread() {
    for (int k = 0; k < 4; ++k) {
      const auto lo = static_cast<int16_t>((4 * k + 1) << 8 | 4 * k);
      const auto hi = static_cast<int16_t>((4 * k + 3) << 8 | (4 * k + 2));
      m[k] = _mm256_set_m128i(_mm_set1_epi16(hi), _mm_set1_epi16(lo));
    }
  }
};

void GemmQ6K(float* y, int64_t ldy, const BlockQ8K* x, int64_t T, const BlockQ6K* w, int64_t nr,
             int64_t K) {
  const int64_t nb = K / kQK;
  const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
  const PairSpread spread;
  for (int64_t r = 0; r < nr; ++r)
    for (int64_t t = 0; t < T; ++t) {
      __m256 acc = _mm256_setzero_ps();  // f32 lanes, summed once per row
      for (int64_t b = 0; b < nb; ++b) {
        const BlockQ6K& wb = w[r * nb + b];
        const BlockQ8K& xb = x[t * nb + b];
        // The 16 scales as int16: Σ_j sc_j·bsum_j per lane pair, and each half's 8 scales in
        // both 128-bit lanes.
        const __m256i s16 =
            _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb.scales)));
        const __m256i halves[2] = {_mm256_permute2x128_si256(s16, s16, 0x00),
                                   _mm256_permute2x128_si256(s16, s16, 0x11)};
        __m256i sum = _mm256_setzero_si256();
        for (int h = 0; h < 2; ++h) {
          const __m256i ql0 = Load(wb.ql + 64 * h), ql1 = Load(wb.ql + 64 * h + 32);
          const __m256i qh = Load(wb.qh + 32 * h);
          const __m256i q[4] = {
              _mm256_or_si256(_mm256_and_si256(ql0, m4),
                              _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4)),
              _mm256_or_si256(_mm256_and_si256(ql1, m4),
                              _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4)),
              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                              _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4)),
              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                              _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4)),
          };
          for (int k = 0; k < 4; ++k) {
            // Sub-blocks j = 8h + 2k and j + 1: elements 16j .. 16j + 31.
            const __m256i p = _mm256_maddubs_epi16(q[k], Load(xb.qs + 128 * h + 32 * k));
            sum = _mm256_add_epi32(
                sum, _mm256_madd_epi16(p, _mm256_shuffle_epi8(halves[h], spread.m[k])));
          }
        }
        const __m256i corr = _mm256_madd_epi16(s16, Load(xb.bsums));  // Σ sc_j·bsum_j, in pairs
        sum = _mm256_sub_epi32(sum, _mm256_slli_epi32(corr, 5));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(Half(wb.d) * xb.d), _mm256_cvtepi32_ps(sum), acc);
      }
      y[t * ldy + r] = HSumF(acc);
    }
}

// The 8 scales s_j − 32 of an IQ4_XS block as int16, computed in registers: lane j takes the
// 16-bit word holding its field and a multiply moves the field to the top bits (a per-lane left
// shift), from where a right shift brings it down: 4 bits from scales_l, 2 from scales_h.
inline __m128i Iq4XsScales(const BlockIq4Xs& wb) {
  uint32_t l;
  __builtin_memcpy(&l, wb.scales_l, 4);
  __m128i lw = _mm_cvtsi32_si128(static_cast<int>(l));
  lw = _mm_unpacklo_epi16(lw, lw);  // words l0 l0 l1 l1
  lw = _mm_unpacklo_epi32(lw, lw);  // l0 ×4, l1 ×4
  const __m128i lo = _mm_srli_epi16(
      _mm_mullo_epi16(lw, _mm_setr_epi16(1 << 12, 1 << 8, 1 << 4, 1, 1 << 12, 1 << 8, 1 << 4, 1)),
      12);
  const __m128i hw = _mm_set1_epi16(static_cast<int16_t>(wb.scales_h));
  const __m128i hi = _mm_srli_epi16(
      _mm_mullo_epi16(hw,
                      _mm_setr_epi16(1 << 14, 1 << 12, 1 << 10, 1 << 8, 1 << 6, 1 << 4, 1 << 2, 1)),
      14);
  return _mm_sub_epi16(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi16(32));
}

void GemmIq4Xs(float* y, int64_t ldy, const BlockQ8K* x, int64_t T, const BlockIq4Xs* w, int64_t nr,
               int64_t K) {
  const int64_t nb = K / kQK;
  const PairSpread spread;
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  const __m128i tab = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlValues));
  const __m256i table = _mm256_set_m128i(tab, tab);
  for (int64_t r = 0; r < nr; ++r)
    for (int64_t t = 0; t < T; ++t) {
      __m256 acc = _mm256_setzero_ps();  // f32 lanes, summed once per row
      for (int64_t b = 0; b < nb; ++b) {
        const BlockIq4Xs& wb = w[r * nb + b];
        const BlockQ8K& xb = x[t * nb + b];
        const __m128i s8 = Iq4XsScales(wb);
        const __m256i scales = _mm256_set_m128i(s8, s8);
        __m256i sum = _mm256_setzero_si256();
        for (int k = 0; k < 4; ++k) {  // sub-blocks 2k (low 128 bits) and 2k + 1 (high)
          const __m256i q = Load(wb.qs + 32 * k);
          const __m256i vlo = _mm256_shuffle_epi8(table, _mm256_and_si256(q, m4));
          const __m256i vhi =
              _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
          const int8_t* xs = xb.qs + 64 * k;
          const __m256i xlo = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(xs + 32),
                                                  reinterpret_cast<const __m128i*>(xs));
          const __m256i xhi = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(xs + 48),
                                                  reinterpret_cast<const __m128i*>(xs + 16));
          const __m256i plo =
              _mm256_maddubs_epi16(_mm256_sign_epi8(vlo, vlo), _mm256_sign_epi8(xlo, vlo));
          const __m256i phi =
              _mm256_maddubs_epi16(_mm256_sign_epi8(vhi, vhi), _mm256_sign_epi8(xhi, vhi));
          const __m256i s = _mm256_shuffle_epi8(scales, spread.m[k]);
          sum = _mm256_add_epi32(sum, _mm256_madd_epi16(plo, s));
          sum = _mm256_add_epi32(sum, _mm256_madd_epi16(phi, s));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(Half(wb.d) * xb.d), _mm256_cvtepi32_ps(sum), acc);
      }
      y[t * ldy + r] = HSumF(acc);
    }
}

// QuantizeQ8K (base/kquant.h) 8 floats at a time, with the same bytes (kquant_avx512.cc's
// QuantizeQ8K512 gives the reasons); the int8 truncation and the 16-element sums stay scalar.
void QuantizeQ8K2(const float* x, BlockQ8K* out, size_t n) {
  const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  for (size_t b = 0; b < n / kQK; ++b, x += kQK) {
    BlockQ8K& o = out[b];
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < kQK; i += 8)
      m = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i), magnitude), m);
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    const float amax = _mm_cvtss_f32(h);
    if (amax == 0) {
      __builtin_memset(&o, 0, sizeof(o));
      continue;
    }
    float max = 0;
    for (int i = 0; i < kQK; i += 8) {
      const int at = _mm256_movemask_ps(_mm256_cmp_ps(
          _mm256_and_ps(_mm256_loadu_ps(x + i), magnitude), _mm256_set1_ps(amax), _CMP_EQ_OQ));
      if (at != 0) {
        max = x[i + __builtin_ctz(static_cast<unsigned>(at))];
        break;
      }
    }
    const float iscale = -127.0f / max;
    const __m256 s = _mm256_set1_ps(iscale);
    alignas(32) int32_t v[16];
    for (int j = 0; j < kQK / 16; ++j) {
      for (int k = 0; k < 2; ++k)
        _mm256_store_si256(reinterpret_cast<__m256i*>(v + 8 * k),
                           _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(
                                                s, _mm256_loadu_ps(x + 16 * j + 8 * k))),
                                            _mm256_set1_epi32(127)));
      int sum = 0;
      for (int i = 0; i < 16; ++i) {
        o.qs[16 * j + i] = static_cast<int8_t>(v[i]);
        sum += o.qs[16 * j + i];
      }
      o.bsums[j] = static_cast<int16_t>(sum);
    }
    o.d = 1.0f / iscale;
  }
}

}  // namespace

const KquantKernels* Avx2KquantKernels() {
  static const KquantKernels k{"avx2",       GemmQ4K, GemmQ5K, GemmQ6K, GemmIq4Xs,
                               QuantizeQ8K2, nullptr, nullptr, nullptr};
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                         __builtin_cpu_supports("f16c");
  return ok ? &k : nullptr;
}

}  // namespace elm

#pragma GCC pop_options

#else

namespace elm {
const KquantKernels* Avx2KquantKernels() {
  return nullptr;
}
}  // namespace elm

#endif
