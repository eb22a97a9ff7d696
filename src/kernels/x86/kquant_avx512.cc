// AVX-512 VNNI decode kernels for the K-quant types (kernels/kquant_kernels.h), 512 bits at a
// time: vpdpbusd sums 4 products of unsigned quants and signed Q8_K activations into each 32-bit
// lane, and vpdpwssd multiplies those lanes by the sub-block scales and accumulates them. Each
// lane's 4-product sum fits in 16 bits (|Σ| ≤ 4·63·127 = 32004), so vpdpwssd on the lane read as
// two int16 (the value and its sign extension) against the scale in the low half (0 in the high)
// multiplies exactly. The activations are laid out once per call to match the weights' registers
// (decode: a handful of blocks shared by every row). The prefill kernels of Q4_K, Q5_K and Q6_K
// (below GroupK) put 16 rows in the lanes instead. Integer sums per super-block equal the scalar
// twin's; the f32 scaling is summed in another order.
// Internal linkage inside the target region, as in kernels_avx512.cc.
#include "kernels/kquant_kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

// GCC 12's AVX-512 headers trip -W(maybe-)uninitialized on their own _mm512_undefined_* helpers.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c,avx2")
#include <immintrin.h>

#include <type_traits>
#include <utility>
#include <vector>

namespace elm {
namespace {

inline float HalfToFloat512(uint16_t h) {
  return _cvtsh_ss(h);
}

// The 8 scales and 8 minimums of a Q4_K/Q5_K block as 32-bit lanes 0..7 and 8..15 (ScaleMinK4 for
// j = 0..7), unpacked in registers as kquant_avx2.cc's UnpackScalesMins describes.
inline __m512i ScalesMins512(const uint8_t* packed) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(packed));
  const __m128i a = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 0));  // w0 w2 w1 w2
  const __m128i b = _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 1, 0, 0));  // w0 w0 w1 w1
  const __m128i low = _mm_and_si128(_mm_srlv_epi32(a, _mm_setr_epi32(0, 0, 0, 4)),
                                    _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
  const __m128i top =
      _mm_and_si128(_mm_srli_epi32(b, 2), _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
  return _mm512_cvtepu8_epi32(_mm_or_si128(low, top));
}

// One Q8_K block laid out for the Q4_K/Q5_K kernel. The weights' register k (k = 0..3) holds
// sub-blocks (a_k, b_k) = (0, 2), (1, 3), (4, 6), (5, 7) in its two 256-bit halves (low nibbles of
// qs[0..63] are sub-blocks 0 and 2, high nibbles 1 and 3; qs[64..127] likewise 4..7), so x[k] holds
// those activations; pairs holds 0 in lanes 0..7 and bsum_2j + bsum_2j+1 in lane 8 + j, against
// the minimums' lanes.
struct XK4 {
  __m512i x[4];
  __m512i pairs;
  float d;
};

// Lanes 0..7: scale a_k, lanes 8..15: scale b_k (the permutation of ScalesMins512's lanes).
struct ScaleIndexK4 {
  __m512i idx[4];
  ScaleIndexK4() {
    const int ab[4][2] = {{0, 2}, {1, 3}, {4, 6}, {5, 7}};
    for (int k = 0; k < 4; ++k)
      idx[k] = _mm512_inserti64x4(_mm512_set1_epi32(ab[k][0]), _mm256_set1_epi32(ab[k][1]), 1);
  }
};

void LayOutK4(const BlockQ8K* x, int64_t n, XK4* out) {
  for (int64_t i = 0; i < n; ++i) {
    const int8_t* q = x[i].qs;
    const int sub[4][2] = {{0, 2}, {1, 3}, {4, 6}, {5, 7}};
    for (int k = 0; k < 4; ++k)
      out[i].x[k] = _mm512_inserti64x4(
          _mm512_castsi256_si512(
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * sub[k][0]))),
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * sub[k][1])), 1);
    alignas(64) int32_t p[16] = {};
    for (int j = 0; j < 8; ++j) p[8 + j] = x[i].bsums[2 * j] + x[i].bsums[2 * j + 1];
    out[i].pairs = _mm512_load_si512(p);
    out[i].d = x[i].d;
  }
}

// The sums of 4 rows' 16-lane accumulators into y[0..3].
inline void StoreSums4(const __m512* acc, float* y) {
  __m256 a[4];
  for (int i = 0; i < 4; ++i)
    a[i] = _mm256_add_ps(_mm512_castps512_ps256(acc[i]),
                         _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[i]), 1)));
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
  _mm_storeu_ps(y, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}

// Rows of `w` in groups of 4 (then one by one), each against the T activation rows: `block(wb, t,
// b, acc)` adds one super-block's product into a row's 16 f32 lanes; a group's 4 sums are reduced
// together.
template <typename B, typename F>
inline void ForRows512(float* y, int64_t ldy, int64_t T, const B* w, int64_t nr, int64_t nb,
                       F block) {
  int64_t r = 0;
  for (; r + 4 <= nr; r += 4)
    for (int64_t t = 0; t < T; ++t) {
      __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                       _mm512_setzero_ps()};
      // Row by row: the weights stream in memory order (interleaving the 4 rows block by block
      // halved the speed once they came from DRAM: docs/performance.md).
      for (int i = 0; i < 4; ++i)
        for (int64_t b = 0; b < nb; ++b) block(w[(r + i) * nb + b], t, b, acc[i]);
      StoreSums4(acc, y + t * ldy + r);
    }
  for (; r < nr; ++r)
    for (int64_t t = 0; t < T; ++t) {
      __m512 acc = _mm512_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) block(w[r * nb + b], t, b, acc);
      y[t * ldy + r] = _mm512_reduce_add_ps(acc);
    }
}

template <bool kFive, typename B>
void GemmK512(float* y, int64_t ldy, const BlockQ8K* x, int64_t T, const B* w, int64_t nr,
              int64_t K) {
  const int64_t nb = K / kQK;
  thread_local std::vector<XK4> lay;
  if (lay.size() < static_cast<size_t>(T * nb)) lay.resize(static_cast<size_t>(T * nb));
  LayOutK4(x, T * nb, lay.data());
  const XK4* xl = lay.data();
  const ScaleIndexK4 si;
  const __m512i m4 = _mm512_set1_epi8(0x0F), bit4 = _mm512_set1_epi8(0x10);
  // Q5_K: the fifth bit of sub-block j is bit j of qh[l]; register k's halves need bits a_k, b_k.
  const __m512i qshift[4] = {_mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1),
                             _mm512_inserti64x4(_mm512_set1_epi16(1), _mm256_set1_epi16(3), 1),
                             _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1),
                             _mm512_inserti64x4(_mm512_set1_epi16(5), _mm256_set1_epi16(7), 1)};
  ForRows512(y, ldy, T, w, nr, nb, [&](const B& wb, int64_t t, int64_t b, __m512& acc) {
    const XK4& xb = xl[t * nb + b];
    const __m512i sm = ScalesMins512(wb.scales);
    const __m512i q0 = _mm512_loadu_si512(wb.qs), q1 = _mm512_loadu_si512(wb.qs + 64);
    __m512i q[4] = {_mm512_and_si512(q0, m4), _mm512_and_si512(_mm512_srli_epi16(q0, 4), m4),
                    _mm512_and_si512(q1, m4), _mm512_and_si512(_mm512_srli_epi16(q1, 4), m4)};
    if constexpr (kFive) {
      const __m512i qh =
          _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb.qh)));
      for (int k = 0; k < 4; ++k)  // q | ((qh >> s) << 4 & 0x10)
        q[k] = _mm512_ternarylogic_epi32(
            q[k], _mm512_slli_epi16(_mm512_srlv_epi16(qh, qshift[k]), 4), bit4, 0xF8);
    }
    __m512i sum = _mm512_setzero_si512();
    for (int k = 0; k < 4; ++k) {
      const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[k], xb.x[k]);
      sum = _mm512_dpwssd_epi32(sum, dot, _mm512_permutexvar_epi32(si.idx[k], sm));
    }
    const __m512i mins = _mm512_dpwssd_epi32(_mm512_setzero_si512(), sm, xb.pairs);
    acc =
        _mm512_fmadd_ps(_mm512_set1_ps(HalfToFloat512(wb.d) * xb.d), _mm512_cvtepi32_ps(sum), acc);
    acc = _mm512_fnmadd_ps(_mm512_set1_ps(HalfToFloat512(wb.dmin) * xb.d), _mm512_cvtepi32_ps(mins),
                           acc);
  });
}

void GemmQ4K512(float* y, int64_t ldy, const BlockQ8K* x, int64_t T, const BlockQ4K* w, int64_t nr,
                int64_t K) {
  GemmK512<false>(y, ldy, x, T, w, nr, K);
}

void GemmQ5K512(float* y, int64_t ldy, const BlockQ8K* x, int64_t T, const BlockQ5K* w, int64_t nr,
                int64_t K) {
  GemmK512<true>(y, ldy, x, T, w, nr, K);
}

// ---- prefill: Q4_K / Q5_K / Q6_K weights × Q8_K activations, 16 rows at a time ----------------
// One super-block of a 16-row group, unpacked to unsigned bytes and interleaved once per call:
// lane r of every register is row r, so each vpdpbusd adds 4 products to 16 rows with the
// activation's 4 bytes broadcast (as the packed Q8_0 tiles of kernels_avx512.cc), and the per-row
// scales and f16 factors are ready as 16-lane vectors.
//   Q4_K/Q5_K  8 sub-blocks of 32: Σ sc_j·dot_j·d·dx − Σ m_j·bsum_j·dmin·dx
//   Q6_K       16 sub-blocks of 16, quants stored as q + 32: (Σ sc_j·dot_j − 32·Σ sc_j·bsum_j)·d·dx
// The Σ ·bsum_j term is 8 vpdpwssd against the activation's 16 bsums read as 8 pairs: word p of
// `pairs` holds the factors of bsums 2p (low 16 bits) and 2p + 1 (high) — m_p twice for Q4_K/Q5_K
// (one minimum per 32), sc_2p and sc_2p+1 for Q6_K.
struct alignas(64) GroupK {
  uint8_t q[64][64];     // quad s (elements 4s .. 4s + 3): row r's 4 bytes at 4r
  int32_t sc[16][16];    // sub-block j's scale, per row (8 of them for Q4_K/Q5_K)
  int32_t pairs[8][16];  // the bsum factors, per row
  float d[16], dmin[16];
};

// A 16 × 16 matrix of 32-bit words transposed in registers: out[c] lane r = in[r] lane c.
inline void Transpose16x16(const __m512i* in, __m512i* out) {
  __m512i t[16], u[16];
  for (int i = 0; i < 8; ++i) {  // per 128-bit lane: (a0 b0 a1 b1), (a2 b2 a3 b3)
    t[2 * i] = _mm512_unpacklo_epi32(in[2 * i], in[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(in[2 * i], in[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // u[4i + k], 128-bit lane L: column 4L + k of rows 4i .. 4i + 3
    u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int k = 0; k < 4; ++k) {  // then the 128-bit lanes, as a 4 × 4 transpose
    const __m512i v0 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0x44);
    const __m512i v1 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0xEE);
    const __m512i v2 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0x44);
    const __m512i v3 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0xEE);
    out[k] = _mm512_shuffle_i32x4(v0, v2, 0x88);
    out[4 + k] = _mm512_shuffle_i32x4(v0, v2, 0xDD);
    out[8 + k] = _mm512_shuffle_i32x4(v1, v3, 0x88);
    out[12 + k] = _mm512_shuffle_i32x4(v1, v3, 0xDD);
  }
}

template <typename B>
constexpr bool kSixK = std::is_same_v<B, BlockQ6K>;

// Quarter h (elements 64h .. 64h + 63) of a row's super-block as 64 unsigned bytes.
template <typename B>
inline __m512i QuarterK(const B& wb, int h) {
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const __mmask32 high = 0xFFFF0000u;  // the upper 256 bits, as 16-bit lanes
  if constexpr (kSixK<B>) {
    // Element 128g + p: nibble p / 64 of ql[64g + p % 64], bits 2·(p / 32) of qh[32g + p % 32].
    const int g = h / 2, n = h % 2;
    const __m512i ql = _mm512_loadu_si512(wb.ql + 64 * g);
    const __m512i lo = _mm512_and_si512(n ? _mm512_srli_epi16(ql, 4) : ql, m4);
    const __m512i qh = _mm512_broadcast_i64x4(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb.qh + 32 * g)));
    const __m512i hi =
        _mm512_and_si512(_mm512_mask_srli_epi16(_mm512_srli_epi16(qh, 4 * n), high, qh, 4 * n + 2),
                         _mm512_set1_epi8(3));
    return _mm512_or_si512(lo, _mm512_slli_epi16(hi, 4));
  } else {
    // qs[32h .. 32h + 31]: sub-block 2h in the low nibbles, 2h + 1 in the high.
    const __m512i v = _mm512_broadcast_i64x4(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb.qs + 32 * h)));
    __m512i q = _mm512_and_si512(_mm512_mask_srli_epi16(v, high, v, 4), m4);
    if constexpr (std::is_same_v<B, BlockQ5K>) {  // bit j of qh[l]: fifth bit of sub-block j
      const __m512i qh =
          _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb.qh)));
      const __m512i bit = _mm512_and_si512(
          _mm512_mask_srli_epi16(_mm512_srli_epi16(qh, 2 * h), high, qh, 2 * h + 1),
          _mm512_set1_epi8(1));
      q = _mm512_or_si512(q, _mm512_slli_epi16(bit, 4));
    }
    return q;
  }
}

// Rows [0, rows) of a 16-row group (w: rows × nb blocks) into out[0 .. nb); missing rows are 0
// and add nothing. Each quarter of 16 rows' super-blocks is transposed as 4-byte words; the
// scales (and minimums) likewise.
template <typename B>
void UnpackGroupK(const B* w, int64_t nb, int64_t rows, GroupK* out) {
  const __m512i low16 = _mm512_set1_epi32(0xFFFF);
  for (int64_t b = 0; b < nb; ++b) {
    GroupK& g = out[b];
    __m512i in[16], t[16];
    for (int64_t r = 0; r < 16; ++r) {
      const B* wb = r < rows ? &w[r * nb + b] : nullptr;
      if constexpr (kSixK<B>) {
        g.d[r] = wb ? HalfToFloat512(wb->d) : 0.0f;
        in[r] =
            wb ? _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb->scales)))
               : _mm512_setzero_si512();
      } else {
        g.d[r] = wb ? HalfToFloat512(wb->d) : 0.0f;
        g.dmin[r] = wb ? HalfToFloat512(wb->dmin) : 0.0f;
        in[r] = wb ? ScalesMins512(wb->scales) : _mm512_setzero_si512();  // 8 scales, 8 minimums
      }
    }
    Transpose16x16(in, t);
    if constexpr (kSixK<B>) {
      for (int j = 0; j < 16; ++j) _mm512_store_si512(g.sc[j], t[j]);
      for (int p = 0; p < 8; ++p)
        _mm512_store_si512(g.pairs[p], _mm512_or_si512(_mm512_and_si512(t[2 * p], low16),
                                                       _mm512_slli_epi32(t[2 * p + 1], 16)));
    } else {
      for (int j = 0; j < 8; ++j) {
        _mm512_store_si512(g.sc[j], t[j]);
        _mm512_store_si512(g.pairs[j], _mm512_or_si512(t[8 + j], _mm512_slli_epi32(t[8 + j], 16)));
      }
    }
    for (int h = 0; h < 4; ++h) {
      for (int64_t r = 0; r < 16; ++r)
        in[r] = r < rows ? QuarterK(w[r * nb + b], h) : _mm512_setzero_si512();
      Transpose16x16(in, t);
      for (int c = 0; c < 16; ++c) _mm512_store_si512(g.q[16 * h + c], t[c]);
    }
  }
}

inline __m512i Bcast4K(const void* p) {
  int32_t v;
  __builtin_memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// MR activation rows (x: row i at i·nb) against one 16-row group: per sub-block, a vpdpbusd per
// 4 elements and row into a fresh sum, times the rows' scales (vpmulld: a sub-block's sum needs
// up to 18 bits) into the super-block's Σ sc_j·dot_j; then the bsum term (see GroupK), and the f32
// scaling as the scalar twin's.
template <bool kSix, int MR>
void TileK(float* y, int64_t ldy, const BlockQ8K* x, int64_t nb, const GroupK* g, __mmask16 rows) {
  constexpr int kQuads = kSix ? 4 : 8;  // per sub-block
  __m512 acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const GroupK& gb = g[b];
    __m512i sumi[MR];
    for (int i = 0; i < MR; ++i) sumi[i] = _mm512_setzero_si512();
    for (int j = 0; j < 64 / kQuads; ++j) {
      __m512i dot[MR];
      for (int i = 0; i < MR; ++i) dot[i] = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int s = 0; s < kQuads; ++s) {
        const __m512i wq = _mm512_load_si512(gb.q[kQuads * j + s]);
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i)
          dot[i] =
              _mm512_dpbusd_epi32(dot[i], wq, Bcast4K(x[i * nb + b].qs + 4 * (kQuads * j + s)));
      }
      const __m512i sc = _mm512_load_si512(gb.sc[j]);
      for (int i = 0; i < MR; ++i)
        sumi[i] = _mm512_add_epi32(sumi[i], _mm512_mullo_epi32(dot[i], sc));
    }
    const __m512 d = _mm512_load_ps(gb.d);
    for (int i = 0; i < MR; ++i) {
      const BlockQ8K& xb = x[i * nb + b];
      __m512i corr = _mm512_setzero_si512();
      for (int p = 0; p < 8; ++p)
        corr = _mm512_dpwssd_epi32(corr, _mm512_load_si512(gb.pairs[p]), Bcast4K(xb.bsums + 2 * p));
      const __m512 dx = _mm512_set1_ps(xb.d);
      if constexpr (kSix) {
        const __m512i sum = _mm512_sub_epi32(sumi[i], _mm512_slli_epi32(corr, 5));
        acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(d, dx), acc[i]);
      } else {
        acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi[i]), _mm512_mul_ps(d, dx), acc[i]);
        acc[i] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(corr),
                                  _mm512_mul_ps(_mm512_load_ps(gb.dmin), dx), acc[i]);
      }
    }
  }
  for (int i = 0; i < MR; ++i) _mm512_mask_storeu_ps(y + i * ldy, rows, acc[i]);
}

constexpr int kTileRowsK = 8;  // activation rows per tile

template <bool kSix, int... MR>
void TileKRows(int n, float* y, int64_t ldy, const BlockQ8K* x, int64_t nb, const GroupK* g,
               __mmask16 rows, std::integer_sequence<int, MR...>) {
  ((n == MR + 1 ? TileK<kSix, MR + 1>(y, ldy, x, nb, g, rows) : void()), ...);
}

template <typename B>
void PrefillK512(float* y, int64_t ldy, const BlockQ8K* x, int64_t T, const B* w, int64_t nr,
                 int64_t K) {
  const int64_t nb = K / kQK;
  thread_local std::vector<GroupK> groups;
  if (groups.size() < static_cast<size_t>(nb)) groups.resize(static_cast<size_t>(nb));
  for (int64_t r0 = 0; r0 < nr; r0 += 16) {
    const int64_t rows = nr - r0 < 16 ? nr - r0 : 16;
    UnpackGroupK(w + r0 * nb, nb, rows, groups.data());
    // The next group's blocks into L2 while this one's tiles run (its unpacking waited on DRAM).
    if (r0 + 16 < nr) {
      const char* next = reinterpret_cast<const char*>(w + (r0 + 16) * nb);
      const int64_t bytes = (nr - r0 - 16 < 16 ? nr - r0 - 16 : 16) * nb * int64_t{sizeof(B)};
      for (int64_t o = 0; o < bytes; o += 64) _mm_prefetch(next + o, _MM_HINT_T1);
    }
    const auto mask = static_cast<__mmask16>((1u << rows) - 1);
    for (int64_t t = 0; t < T; t += kTileRowsK)
      TileKRows<kSixK<B>>(static_cast<int>(T - t < kTileRowsK ? T - t : kTileRowsK),
                          y + t * ldy + r0, ldy, x + t * nb, nb, groups.data(), mask,
                          std::make_integer_sequence<int, kTileRowsK>());
  }
}

void PrefillQ4K512(float* y, int64_t ldy, const BlockQ8K* x, int64_t T, const BlockQ4K* w,
                   int64_t nr, int64_t K) {
  PrefillK512(y, ldy, x, T, w, nr, K);
}

void PrefillQ5K512(float* y, int64_t ldy, const BlockQ8K* x, int64_t T, const BlockQ5K* w,
                   int64_t nr, int64_t K) {
  PrefillK512(y, ldy, x, T, w, nr, K);
}

void PrefillQ6K512(float* y, int64_t ldy, const BlockQ8K* x, int64_t T, const BlockQ6K* w,
                   int64_t nr, int64_t K) {
  PrefillK512(y, ldy, x, T, w, nr, K);
}

// Q6_K: element e = 128h + p sits in nibble p / 64 of ql[64h + p % 64] and bits 2·(p / 32) of
// qh[32h + p % 32]; register 2h + n (n = 0, 1) holds elements 128h + 64n .. + 63, sub-blocks
// 8h + 4n .. + 3 in its four 128-bit quarters, against the activations in their own order. The
// quants are the unsigned q + 32; Σ sc_j·32·bsum_j is subtracted once per block.
void GemmQ6K512(float* y, int64_t ldy, const BlockQ8K* x, int64_t T, const BlockQ6K* w, int64_t nr,
                int64_t K) {
  const int64_t nb = K / kQK;
  const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(0x30);
  // Scale j of the 16 over lanes 4j' .. 4j' + 3 of register k (j = 4k + j').
  __m512i idx[4];
  for (int k = 0; k < 4; ++k)
    idx[k] = _mm512_setr_epi32(4 * k, 4 * k, 4 * k, 4 * k, 4 * k + 1, 4 * k + 1, 4 * k + 1,
                               4 * k + 1, 4 * k + 2, 4 * k + 2, 4 * k + 2, 4 * k + 2, 4 * k + 3,
                               4 * k + 3, 4 * k + 3, 4 * k + 3);
  // Bits 2·(p / 32) of qh, moved to bits 4..5: the low half of register n needs shift 4n (p / 32
  // = 2n), the high half 4n + 2, as left shifts by 4 − that (right shifts where negative).
  const __m512i sh_lo = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
  const __m512i sh_hi = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
  ForRows512(y, ldy, T, w, nr, nb, [&](const BlockQ6K& wb, int64_t t, int64_t b, __m512& acc) {
    const BlockQ8K& xb = x[t * nb + b];
    // The signed scales in the low 16 bits of each lane, 0 in the high 16 (see the top).
    const __m512i sc = _mm512_and_si512(
        _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb.scales))),
        _mm512_set1_epi32(0xFFFF));
    __m512i sum = _mm512_setzero_si512();
    for (int h = 0; h < 2; ++h) {
      const __m512i ql = _mm512_loadu_si512(wb.ql + 64 * h);
      const __m512i qh = _mm512_broadcast_i64x4(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb.qh + 32 * h)));
      const __m512i q[2] = {_mm512_or_si512(_mm512_and_si512(ql, m4),
                                            _mm512_and_si512(_mm512_sllv_epi16(qh, sh_lo), m2)),
                            _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                            _mm512_and_si512(_mm512_srlv_epi16(qh, sh_hi), m2))};
      for (int n = 0; n < 2; ++n) {
        const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[n],
                                                _mm512_loadu_si512(xb.qs + 128 * h + 64 * n));
        sum = _mm512_dpwssd_epi32(sum, dot, _mm512_permutexvar_epi32(idx[2 * h + n], sc));
      }
    }
    // Σ_j sc_j·bsum_j: the 16 bsums as 32-bit lanes against the 16 scales.
    const __m512i bs =
        _mm512_cvtepi16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.bsums)));
    const __m512i corr = _mm512_dpwssd_epi32(_mm512_setzero_si512(), sc, bs);
    sum = _mm512_sub_epi32(sum, _mm512_slli_epi32(corr, 5));
    acc =
        _mm512_fmadd_ps(_mm512_set1_ps(HalfToFloat512(wb.d) * xb.d), _mm512_cvtepi32_ps(sum), acc);
  });
}

// IQ4_XS: register n (qs[64n .. 64n + 63]) holds sub-block 4n + L in its 128-bit quarter L, low
// nibbles elements 32j .. + 15 and high nibbles 32j + 16 .. + 31 (j = 4n + L). The signed levels
// are looked up as v + 128 (unsigned, for vpdpbusd), and the lanes start at −128·Σ x of their 8
// activations, so each lane ends at the exact Σ v·x; vpmulld applies the scale (these sums need
// more than 16 bits).
struct XIq4 {
  __m512i lo[2], hi[2];  // register n's activations for the low and the high nibbles
  __m512i start[2];      // −128·Σ x over each lane's 8 activations
  float d;
};

void LayOutIq4(const BlockQ8K* x, int64_t n, XIq4* out) {
  // 128·Σ over each 4 bytes of the low and the high register (vpdpbusd against 128 as unsigned).
  const __m512i c128 = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t i = 0; i < n; ++i) {
    for (int r = 0; r < 2; ++r) {
      // Sub-blocks 4r .. 4r + 3 (32 activations each): a holds 4r and 4r + 1, b 4r + 2 and 4r + 3,
      // each as its low 16 then its high 16; quarter L of lo / hi takes sub-block 4r + L's.
      const __m512i a = _mm512_loadu_si512(x[i].qs + 128 * r);
      const __m512i b = _mm512_loadu_si512(x[i].qs + 128 * r + 64);
      const __m512i lo = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(2, 0, 2, 0));
      const __m512i hi = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(3, 1, 3, 1));
      out[i].lo[r] = lo;
      out[i].hi[r] = hi;
      const __m512i sum =
          _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), c128, lo), c128, hi);
      out[i].start[r] = _mm512_sub_epi32(_mm512_setzero_si512(), sum);
    }
    out[i].d = x[i].d;
  }
}

// The 8 scales s_j − 32 of an IQ4_XS block as int16 (kquant_avx2.cc's Iq4XsScales).
inline __m128i Iq4XsScales512(const BlockIq4Xs& wb) {
  uint32_t l;
  __builtin_memcpy(&l, wb.scales_l, 4);
  __m128i lw = _mm_cvtsi32_si128(static_cast<int>(l));
  lw = _mm_unpacklo_epi16(lw, lw);
  lw = _mm_unpacklo_epi32(lw, lw);
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

void GemmIq4Xs512(float* y, int64_t ldy, const BlockQ8K* x, int64_t T, const BlockIq4Xs* w,
                  int64_t nr, int64_t K) {
  const int64_t nb = K / kQK;
  thread_local std::vector<XIq4> lay;
  if (lay.size() < static_cast<size_t>(T * nb)) lay.resize(static_cast<size_t>(T * nb));
  LayOutIq4(x, T * nb, lay.data());
  const XIq4* xl = lay.data();
  alignas(16) uint8_t shifted[16];
  for (int i = 0; i < 16; ++i) shifted[i] = static_cast<uint8_t>(kIq4nlValues[i] + 128);
  const __m512i table =
      _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(shifted)));
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  // Lane l of register n takes scale 4n + l / 4.
  const __m512i idx[2] = {_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                          _mm512_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7)};
  ForRows512(y, ldy, T, w, nr, nb, [&](const BlockIq4Xs& wb, int64_t t, int64_t b, __m512& acc) {
    const XIq4& xb = xl[t * nb + b];
    const __m512i sc = _mm512_castsi256_si512(_mm256_cvtepi16_epi32(Iq4XsScales512(wb)));
    __m512i sum = _mm512_setzero_si512();
    for (int n = 0; n < 2; ++n) {
      const __m512i q = _mm512_loadu_si512(wb.qs + 64 * n);
      const __m512i ulo = _mm512_shuffle_epi8(table, _mm512_and_si512(q, m4));
      const __m512i uhi = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(q, 4), m4));
      __m512i dot = _mm512_dpbusd_epi32(xb.start[n], ulo, xb.lo[n]);
      dot = _mm512_dpbusd_epi32(dot, uhi, xb.hi[n]);
      sum = _mm512_add_epi32(sum, _mm512_mullo_epi32(dot, _mm512_permutexvar_epi32(idx[n], sc)));
    }
    acc =
        _mm512_fmadd_ps(_mm512_set1_ps(HalfToFloat512(wb.d) * xb.d), _mm512_cvtepi32_ps(sum), acc);
  });
}

// QuantizeQ8K (base/kquant.h) 16 floats at a time, with the same bytes: the largest magnitude
// is found as a maximum (vmaxps keeps its second operand where the first is NaN, so NaNs are
// skipped as the scalar `a > amax` skips them), its first position gives the signed maximum,
// the products iscale·x are the same single f32 multiplications, vcvtps2dq rounds them with the
// current rounding mode as nearbyint does, and vpmovdb truncates to int8 as the scalar cast does.
// The 16-element sums add those int8 values back.
void QuantizeQ8K512(const float* x, BlockQ8K* out, size_t n) {
  const __m512 magnitude = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
  for (size_t b = 0; b < n / kQK; ++b, x += kQK) {
    BlockQ8K& o = out[b];
    __m512 m = _mm512_setzero_ps();
    for (int i = 0; i < kQK; i += 16)
      m = _mm512_max_ps(_mm512_and_ps(_mm512_loadu_ps(x + i), magnitude), m);
    const float amax = _mm512_reduce_max_ps(m);
    if (amax == 0) {
      __builtin_memset(&o, 0, sizeof(o));
      continue;
    }
    float max = 0;
    for (int i = 0; i < kQK; i += 16) {
      const __mmask16 at = _mm512_cmp_ps_mask(_mm512_and_ps(_mm512_loadu_ps(x + i), magnitude),
                                              _mm512_set1_ps(amax), _CMP_EQ_OQ);
      if (at != 0) {
        max = x[i + __builtin_ctz(at)];
        break;
      }
    }
    const float iscale = -127.0f / max;
    const __m512 s = _mm512_set1_ps(iscale);
    for (int j = 0; j < kQK / 16; ++j) {
      const __m512i v =
          _mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(s, _mm512_loadu_ps(x + 16 * j))),
                           _mm512_set1_epi32(127));
      const __m128i q = _mm512_cvtepi32_epi8(v);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o.qs + 16 * j), q);
      o.bsums[j] = static_cast<int16_t>(_mm512_reduce_add_epi32(_mm512_cvtepi8_epi32(q)));
    }
    o.d = 1.0f / iscale;
  }
}

}  // namespace

const KquantKernels* Avx512KquantKernels() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                         __builtin_cpu_supports("avx512vnni") && Avx2KquantKernels() != nullptr;
  if (!ok) return nullptr;
  static const KquantKernels k{"avx512",      GemmQ4K512,    GemmQ5K512,
                               GemmQ6K512,    GemmIq4Xs512,  QuantizeQ8K512,
                               PrefillQ4K512, PrefillQ5K512, PrefillQ6K512};
  return &k;
}

}  // namespace elm

#pragma GCC pop_options

#else

namespace elm {
const KquantKernels* Avx512KquantKernels() {
  return nullptr;
}
}  // namespace elm

#endif
