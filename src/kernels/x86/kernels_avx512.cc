// AVX-512 micro-kernels (F, BW, VL, DQ, BF16, VNNI), compiled for those instructions only in this
// file and used only after the CPU reports them. Everything here has internal linkage and uses no
// inline library templates, so no AVX-512 code can leak into the generic build through the linker.
//
// GEMM shape: y[t, r] = Σ_k x[t, k] · w[r, k]. Register tiles of MR activation rows × NR weight
// rows accumulate 16-lane partial sums over k and are reduced once at the end of the row, so a tile
// holds MR·NR zmm accumulators (≤ 16) and needs MR + NR loads per 32 (bf16) or 16 (f32) k.
// Activations are walked in blocks of kTB rows so a block stays in L2 while weight rows stream.
#include "kernels/cpu_kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define ELM_HAVE_AVX512_KERNELS 1

// GCC 12's AVX-512 headers trip -W(maybe-)uninitialized on their own _mm512_undefined_* helpers.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx512vnni,fma,f16c,avx2")
#include <immintrin.h>

#include <utility>

namespace elm {
namespace {

constexpr int64_t kTB = 64;  // activation rows per cache block

inline __mmask16 Mask16(int64_t n) {
  return static_cast<__mmask16>((1u << n) - 1u);
}
inline __mmask32 Mask32(int64_t n) {
  return n >= 32 ? static_cast<__mmask32>(0xffffffffu) : static_cast<__mmask32>((1u << n) - 1u);
}

// {Σa, Σb, Σc, Σd} of four 16-lane accumulators: halves folded together across the four (14
// instructions instead of four separate reductions of 8).
inline __m128 Reduce4(__m512 a, __m512 b, __m512 c, __m512 d) {
  // [a 0-3 4-7 | b 0-3 4-7] + [a 8-11 12-15 | b 8-11 12-15]: 8 partial sums of a, then of b.
  const __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(3, 2, 3, 2)));
  // One 128-bit lane of 4 partial sums for each of a, b, c, d.
  const __m512 q = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(3, 1, 3, 1)));
  __m512 t = _mm512_add_ps(q, _mm512_shuffle_ps(q, q, _MM_SHUFFLE(2, 3, 0, 1)));
  t = _mm512_add_ps(t, _mm512_shuffle_ps(t, t, _MM_SHUFFLE(1, 0, 3, 2)));
  return _mm512_castps512_ps128(
      _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), t));
}

// y[j] = Σ acc[j] for j < NR: four at a time, the rest one by one.
template <int NR>
inline void StoreSums(float* y, const __m512* acc) {
  int j = 0;
  for (; j + 4 <= NR; j += 4)
    _mm_storeu_ps(y + j, Reduce4(acc[j], acc[j + 1], acc[j + 2], acc[j + 3]));
  for (; j < NR; ++j) y[j] = _mm512_reduce_add_ps(acc[j]);
}

// ---- bf16 × bf16 → f32 (vdpbf16ps) -------------------------------------------------------------
// Up to 4 × 6 tiles: 24 accumulators hide vdpbf16ps's latency; weights are loaded one at a time
// so the tile fits the 32 registers.
// kAhead (a few activation rows: batched decoding), where the weights come from memory and each
// 6-row group is read by a pass per 4 activation rows: the first pass fetches each weight row's
// line kBf16Ahead lines ahead (the hardware prefetchers fall behind 6 rows read this slowly), and
// the last pass, which finds its rows in cache, fetches the next group's rows (`next`,
// `next_rows` of them) into L2, so memory keeps streaming while it computes.
constexpr int64_t kBf16Ahead = 8;
constexpr int64_t kBf16AheadRows = 16;  // up to this many activation rows

template <int MR, int NR, bool kAhead = false>
void TileBf16(float* y, int64_t ldy, const uint16_t* x, const uint16_t* w, int64_t K,
              bool first = false, const uint16_t* next = nullptr, int next_rows = 0) {
  __m512 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    if constexpr (kAhead) {
      for (int j = 0; j < next_rows; ++j) _mm_prefetch(next + j * K + k, _MM_HINT_T1);
      if (first)
        for (int j = 0; j < NR; ++j) _mm_prefetch(w + j * K + k + 32 * kBf16Ahead, _MM_HINT_T0);
    }
    __m512i xv[MR];
    for (int i = 0; i < MR; ++i) xv[i] = _mm512_loadu_si512(x + i * K + k);
    for (int j = 0; j < NR; ++j) {
      const __m512i wv = _mm512_loadu_si512(w + j * K + k);
      for (int i = 0; i < MR; ++i)
        acc[i][j] = _mm512_dpbf16_ps(acc[i][j], (__m512bh)xv[i], (__m512bh)wv);
    }
  }
  if (k < K) {
    const __mmask32 m = Mask32(K - k);
    __m512i xv[MR], wv[NR];
    for (int i = 0; i < MR; ++i) xv[i] = _mm512_maskz_loadu_epi16(m, x + i * K + k);
    for (int j = 0; j < NR; ++j) wv[j] = _mm512_maskz_loadu_epi16(m, w + j * K + k);
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j)
        acc[i][j] = _mm512_dpbf16_ps(acc[i][j], (__m512bh)xv[i], (__m512bh)wv[j]);
  }
  for (int i = 0; i < MR; ++i) StoreSums<NR>(y + i * ldy, acc[i]);
}

// ---- f32 × f32 and f32 × f16 → f32 (FMA) -------------------------------------------------------
template <bool kF16W>
inline __m512 LoadW(const void* w, int64_t off) {
  if constexpr (kF16W) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + off)));
  } else {
    return _mm512_loadu_ps(static_cast<const float*>(w) + off);
  }
}
template <bool kF16W>
inline __m512 LoadWMasked(const void* w, int64_t off, __mmask16 m) {
  if constexpr (kF16W) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(w) + off));
  } else {
    return _mm512_maskz_loadu_ps(m, static_cast<const float*>(w) + off);
  }
}

template <int MR, int NR, bool kF16W>
void TileF32(float* y, int64_t ldy, const float* x, const void* w, int64_t K) {
  __m512 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m512 xv[MR], wv[NR];
    for (int i = 0; i < MR; ++i) xv[i] = _mm512_loadu_ps(x + i * K + k);
    for (int j = 0; j < NR; ++j) wv[j] = LoadW<kF16W>(w, j * K + k);
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_fmadd_ps(xv[i], wv[j], acc[i][j]);
  }
  if (k < K) {
    const __mmask16 m = Mask16(K - k);
    __m512 xv[MR], wv[NR];
    for (int i = 0; i < MR; ++i) xv[i] = _mm512_maskz_loadu_ps(m, x + i * K + k);
    for (int j = 0; j < NR; ++j) wv[j] = LoadWMasked<kF16W>(w, j * K + k, m);
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_fmadd_ps(xv[i], wv[j], acc[i][j]);
  }
  for (int i = 0; i < MR; ++i) StoreSums<NR>(y + i * ldy, acc[i]);
}

// ---- decoding (one activation row): each weight row streamed start to end ---------------------
// A thread's panel of weight rows is then one sequential read, which this memory-bound step runs
// ~15-30% faster than tiles that interleave 6-8 rows (docs/performance.md). Loads are 64-byte
// aligned: a row that is not (mmapped safetensors data is only 8-byte aligned) is read line by line
// and shifted into place, so no load splits a cache line and the vectors, hence the results, are
// the same wherever the weights lie.
//
// The lines read hold bytes of the row, so they cannot fault, but some of their bytes lie before
// or after it (outside its allocation, for a small buffer), which AddressSanitizer would report:
// these reads are left uninstrumented.
#if defined(__SANITIZE_ADDRESS__)
#define ELM_WHOLE_LINES __attribute__((no_sanitize_address))
#else
#define ELM_WHOLE_LINES
#endif
template <bool kShift>
class RowLines {
 public:
  ELM_WHOLE_LINES explicit RowLines(const void* p) {
    const auto a = reinterpret_cast<uintptr_t>(p);
    line_ = reinterpret_cast<const __m512i*>(a & ~uintptr_t{63});
    if constexpr (kShift) {
      // 16-bit lanes off .. off+31 of the pair (this line, next line); weights are 2-byte aligned.
      idx_ = _mm512_add_epi16(
          _mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14,
                           13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
          _mm512_set1_epi16(static_cast<int16_t>((a & 63) / 2)));
      lo_ = _mm512_load_si512(line_);
    }
  }
  // The next 64 bytes of the row; only for bytes inside it (so the next line holds some of them).
  ELM_WHOLE_LINES __m512i Next() {
    if constexpr (kShift) {
      const __m512i hi = _mm512_load_si512(++line_);
      const __m512i v = _mm512_permutex2var_epi16(lo_, idx_, hi);
      lo_ = hi;
      return v;
    } else {
      return _mm512_load_si512(line_++);
    }
  }

 private:
  const __m512i* line_;
  __m512i idx_, lo_;
};

// What one 64-byte vector of weights contributes, and the masked tail of a row (n elements left).
struct DotBf16 {
  static constexpr int64_t kPer = 32;
  const uint16_t* x;
  __m512 operator()(__m512 acc, __m512i w, int64_t k) const {
    return _mm512_dpbf16_ps(acc, (__m512bh)_mm512_loadu_si512(x + k), (__m512bh)w);
  }
  __m512 Tail(__m512 acc, const void* w, int64_t k, int64_t n) const {
    const __mmask32 m = Mask32(n);
    return _mm512_dpbf16_ps(
        acc, (__m512bh)_mm512_maskz_loadu_epi16(m, x + k),
        (__m512bh)_mm512_maskz_loadu_epi16(m, static_cast<const uint16_t*>(w) + k));
  }
};
struct DotF32 {
  static constexpr int64_t kPer = 16;
  const float* x;
  __m512 operator()(__m512 acc, __m512i w, int64_t k) const {
    return _mm512_fmadd_ps(_mm512_loadu_ps(x + k), _mm512_castsi512_ps(w), acc);
  }
  __m512 Tail(__m512 acc, const void* w, int64_t k, int64_t n) const {
    const __mmask16 m = Mask16(n);
    return _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + k), LoadWMasked<false>(w, k, m), acc);
  }
};

// Four accumulators over whole vectors, then the tail; summed in a fixed order.
template <bool kShift, typename Dot>
ELM_WHOLE_LINES float RowDot(const Dot& dot, const void* w, int64_t K) {
  constexpr int64_t E = Dot::kPer;
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t k = 0;
  if (K >= E) {  // whole vectors (a shorter row is all tail)
    RowLines<kShift> lines(w);
    for (; k + 4 * E <= K; k += 4 * E) {
      a0 = dot(a0, lines.Next(), k);
      a1 = dot(a1, lines.Next(), k + E);
      a2 = dot(a2, lines.Next(), k + 2 * E);
      a3 = dot(a3, lines.Next(), k + 3 * E);
    }
    for (; k + E <= K; k += E) a0 = dot(a0, lines.Next(), k);
  }
  if (k < K) a1 = dot.Tail(a1, w, k, K - k);
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

// F16 rows are read 32 bytes at a time and converted straight from memory (vcvtph2ps zmm, m256):
// measured ~40% faster here than converting both halves of a 64-byte vector. GGUF aligns tensors
// to 32 bytes, so these loads stay within a line.
float RowDotF16(const float* x, const uint16_t* w, int64_t K) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t k = 0;
  for (; k + 64 <= K; k += 64) {
    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + k), LoadW<true>(w, k), a0);
    a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + k + 16), LoadW<true>(w, k + 16), a1);
    a2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + k + 32), LoadW<true>(w, k + 32), a2);
    a3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + k + 48), LoadW<true>(w, k + 48), a3);
  }
  for (; k < K; k += 16) {
    const __mmask16 m = Mask16(K - k < 16 ? K - k : 16);
    a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + k), LoadWMasked<true>(w, k, m), a0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

template <typename Dot>
void DecodeRows(float* y, const Dot& dot, const void* w, int64_t row_bytes, int64_t nr, int64_t K) {
  for (int64_t r = 0; r < nr; ++r) {
    const void* wr = static_cast<const char*>(w) + r * row_bytes;
    y[r] = reinterpret_cast<uintptr_t>(wr) % 64 == 0 ? RowDot<false>(dot, wr, K)
                                                     : RowDot<true>(dot, wr, K);
  }
}

// Runs tiles over the whole [T, nr] output: activation blocks of kTB rows outermost, then weight
// rows in steps of NRMAX, then activation rows in steps of 4.
template <int NRMAX = 4, typename TX, typename Tile>
void Blocked(float* y, int64_t ldy, const TX* x, int64_t T, int64_t nr, int64_t K,
             const Tile& tile) {
  for (int64_t tb = 0; tb < T; tb += kTB) {
    const int64_t te = tb + kTB < T ? tb + kTB : T;
    for (int64_t r = 0; r < nr; r += NRMAX) {
      const int nrr = static_cast<int>(nr - r < NRMAX ? nr - r : NRMAX);
      for (int64_t t = tb; t < te; t += 4) {
        const int mr = static_cast<int>(te - t < 4 ? te - t : 4);
        tile(mr, nrr, y + t * ldy + r, x + t * K, r);
      }
    }
  }
}

// Dispatches a runtime (mr, nr) ∈ [1,4]² to the template instance.
// clang-format off
#define ELM_TILE_SWITCH(MRV, NRV, CALL)                                      \
  switch ((MRV) * 8 + (NRV)) {                                               \
    case 9: CALL(1, 1); break;  case 10: CALL(1, 2); break;                  \
    case 11: CALL(1, 3); break; case 12: CALL(1, 4); break;                  \
    case 17: CALL(2, 1); break; case 18: CALL(2, 2); break;                  \
    case 19: CALL(2, 3); break; case 20: CALL(2, 4); break;                  \
    case 25: CALL(3, 1); break; case 26: CALL(3, 2); break;                  \
    case 27: CALL(3, 3); break; case 28: CALL(3, 4); break;                  \
    case 33: CALL(4, 1); break; case 34: CALL(4, 2); break;                  \
    case 35: CALL(4, 3); break; default: CALL(4, 4); break;                  \
  }
// clang-format on

using TileBf16Fn = void (*)(float*, int64_t, const uint16_t*, const uint16_t*, int64_t, bool,
                            const uint16_t*, int);
// clang-format off
#define ELM_BF16_ROW(MR, A)                                                                \
  {TileBf16<MR, 1, A>, TileBf16<MR, 2, A>, TileBf16<MR, 3, A>, TileBf16<MR, 4, A>,         \
   TileBf16<MR, 5, A>, TileBf16<MR, 6, A>}
const TileBf16Fn kBf16Tiles[2][4][6] = {
    {ELM_BF16_ROW(1, false), ELM_BF16_ROW(2, false), ELM_BF16_ROW(3, false),
     ELM_BF16_ROW(4, false)},
    {ELM_BF16_ROW(1, true), ELM_BF16_ROW(2, true), ELM_BF16_ROW(3, true), ELM_BF16_ROW(4, true)}};
#undef ELM_BF16_ROW
// clang-format on

void GemmBf16(float* y, int64_t ldy, const uint16_t* x, int64_t T, const uint16_t* w, int64_t nr,
              int64_t K) {
  if (T == 1) return DecodeRows(y, DotBf16{x}, w, K * 2, nr, K);
  if (T <= kBf16AheadRows) {  // the weights' one pass from memory per step (see TileBf16)
    for (int64_t r = 0; r < nr; r += 6) {
      const int nrr = static_cast<int>(nr - r < 6 ? nr - r : 6);
      const int next_rows = static_cast<int>(nr - r - 6 < 6 ? nr - r - 6 : 6);
      for (int64_t t = 0; t < T; t += 4) {
        const int mr = static_cast<int>(T - t < 4 ? T - t : 4);
        const bool last = t + 4 >= T && next_rows > 0;
        kBf16Tiles[1][mr - 1][nrr - 1](y + t * ldy + r, ldy, x + t * K, w + r * K, K, t == 0,
                                       last ? w + (r + 6) * K : nullptr, last ? next_rows : 0);
      }
    }
    return;
  }
  Blocked<6>(y, ldy, x, T, nr, K, [&](int mr, int nrr, float* yt, const uint16_t* xt, int64_t r) {
    kBf16Tiles[0][mr - 1][nrr - 1](yt, ldy, xt, w + r * K, K, false, nullptr, 0);
  });
}

void GemmF32(float* y, int64_t ldy, const float* x, int64_t T, const float* w, int64_t nr,
             int64_t K) {
  if (T == 1) return DecodeRows(y, DotF32{x}, w, K * 4, nr, K);
  Blocked(y, ldy, x, T, nr, K, [&](int mr, int nrr, float* yt, const float* xt, int64_t r) {
    const float* wt = w + r * K;
#define ELM_CALL(A, B) TileF32<A, B, false>(yt, ldy, xt, wt, K)
    ELM_TILE_SWITCH(mr, nrr, ELM_CALL)
#undef ELM_CALL
  });
}

void GemmF16(float* y, int64_t ldy, const float* x, int64_t T, const uint16_t* w, int64_t nr,
             int64_t K) {
  if (T == 1) {
    for (int64_t r = 0; r < nr; ++r) y[r] = RowDotF16(x, w + r * K, K);
    return;
  }
  Blocked(y, ldy, x, T, nr, K, [&](int mr, int nrr, float* yt, const float* xt, int64_t r) {
    const uint16_t* wt = w + r * K;
#define ELM_CALL(A, B) TileF32<A, B, true>(yt, ldy, xt, wt, K)
    ELM_TILE_SWITCH(mr, nrr, ELM_CALL)
#undef ELM_CALL
  });
}

// ---- Q8_0 / Q4_0 weights × Q8_0 activations (VNNI on 256-bit lanes) ----------------------------
// vpdpbusd multiplies unsigned by signed bytes. Q8_0 × Q8_0 uses |x| and sign(x)·w; Q4_0 keeps its
// nibbles unsigned (0..15) and subtracts 8·Σx afterwards.
inline float Half(uint16_t h) {
  return _cvtsh_ss(h);
}

inline __m256 HSumHelperZero() {
  return _mm256_setzero_ps();
}

inline float HSum256(__m256 v) {
  const __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  __m128 s = _mm_add_ps(lo, hi);
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <int NR>
void RowQ8_0(float* y, const BlockQ8_0* x, const BlockQ8_0* w, int64_t nb) {
  __m256 acc[NR];
  for (int j = 0; j < NR; ++j) acc[j] = HSumHelperZero();
  for (int64_t b = 0; b < nb; ++b) {
    const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].q));
    const __m256i ax = _mm256_sign_epi8(xq, xq);
    const float dx = Half(x[b].d);
    for (int j = 0; j < NR; ++j) {
      const BlockQ8_0& wb = w[j * nb + b];
      const __m256i wq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb.q));
      const __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, _mm256_sign_epi8(wq, xq));
      acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(dx * Half(wb.d)), acc[j]);
    }
  }
  for (int j = 0; j < NR; ++j) y[j] = HSum256(acc[j]);
}

template <int NR>
void RowQ4_0(float* y, const BlockQ8_0* x, const BlockQ4_0* w, int64_t nb) {
  __m256 acc[NR];
  for (int j = 0; j < NR; ++j) acc[j] = HSumHelperZero();
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i eights = _mm256_set1_epi8(8);
  for (int64_t b = 0; b < nb; ++b) {
    const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].q));
    const __m256i xs8 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), eights, xq);  // 8·Σx per lane
    const float dx = Half(x[b].d);
    for (int j = 0; j < NR; ++j) {
      const BlockQ4_0& wb = w[j * nb + b];
      const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(wb.nib));
      // Elements 0..15 are the low nibbles, 16..31 the high ones.
      const __m256i both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
      const __m256i wu = _mm256_and_si256(both, low4);
      const __m256i dot =
          _mm256_sub_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), wu, xq), xs8);
      acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(dx * Half(wb.d)), acc[j]);
    }
  }
  for (int j = 0; j < NR; ++j) y[j] = HSum256(acc[j]);
}

void GemmQ8_0(float* y, int64_t ldy, const BlockQ8_0* x, int64_t T, const BlockQ8_0* w, int64_t nr,
              int64_t K) {
  const int64_t nb = K / kQBlock;
  for (int64_t t = 0; t < T; ++t) {
    int64_t r = 0;
    for (; r + 4 <= nr; r += 4) RowQ8_0<4>(y + t * ldy + r, x + t * nb, w + r * nb, nb);
    for (; r < nr; ++r) RowQ8_0<1>(y + t * ldy + r, x + t * nb, w + r * nb, nb);
  }
}

void GemmQ4_0(float* y, int64_t ldy, const BlockQ8_0* x, int64_t T, const BlockQ4_0* w, int64_t nr,
              int64_t K) {
  const int64_t nb = K / kQBlock;
  for (int64_t t = 0; t < T; ++t) {
    int64_t r = 0;
    for (; r + 4 <= nr; r += 4) RowQ4_0<4>(y + t * ldy + r, x + t * nb, w + r * nb, nb);
    for (; r < nr; ++r) RowQ4_0<1>(y + t * ldy + r, x + t * nb, w + r * nb, nb);
  }
}

// ---- packed Q8_0 / Q4_0 weights (quant.h) × Q8_0 activations ---------------------------------
// Lane j of a 16-lane accumulator is row j of the 16-row group. Each vpdpbusd adds four products
// (4 consecutive k) to every row, with the activations' 4 bytes broadcast to all lanes, so after
// a block (8 steps) each lane holds that row's whole integer block dot product and the scales
// are applied to 16 rows with one multiply-add. Two chains of four steps keep the adder busy.
inline __m512i Bcast4(const int8_t* p) {
  int32_t v;
  __builtin_memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// Tiles of 2+ activation rows consume the weights slower than one row does, and the hardware
// prefetchers then fall behind: each block is fetched kPackedAhead blocks ahead into L1 (batched
// decoding of 8 streams: 1.35-1.40x per step, docs/performance.md). Past the end of a group it
// touches the next group's blocks, which come next (or nothing: prefetches do not fault).
constexpr int64_t kPackedAhead = 12;

template <typename BW>
inline void PrefetchAhead(const BW* block) {
  const char* p = reinterpret_cast<const char*>(block);
  for (size_t o = 0; o < sizeof(BW); o += 64) _mm_prefetch(p + o, _MM_HINT_T0);
}

// One 16-row block of packed weights against MR activation rows, added to acc: wv[s] holds
// elements 4s .. 4s + 3 of every row as unsigned q + bias, so each row's sum starts at −bias·Σx.
// Up to 4 activation rows: two chains of four steps per row keep the adder busy; 5 to 8 rows
// (batched decoding of several streams, and prefill): one chain per row, the rows' chains
// interleaved, so the weights stream from memory once for 8 rows. The integer sums are the same
// either way, so the results do not depend on the tile height.
template <int MR>
inline void AddPackedBlock(const __m512i* wv, int bias, __m512 dw, const BlockQ8_0* x,
                           const int32_t* xs, int64_t nb, int64_t b, __m512* acc) {
  __m512i dot[MR];
  if constexpr (MR <= 4) {
    for (int i = 0; i < MR; ++i) {
      const BlockQ8_0& xb = x[i * nb + b];
      __m512i d0 = _mm512_set1_epi32(-bias * xs[i * nb + b]);
      __m512i d1 = _mm512_setzero_si512();
      for (int s = 0; s < 8; s += 2) {
        d0 = _mm512_dpbusd_epi32(d0, wv[s], Bcast4(xb.q + 4 * s));
        d1 = _mm512_dpbusd_epi32(d1, wv[s + 1], Bcast4(xb.q + 4 * s + 4));
      }
      dot[i] = _mm512_add_epi32(d0, d1);
    }
  } else {
    for (int i = 0; i < MR; ++i) dot[i] = _mm512_set1_epi32(-bias * xs[i * nb + b]);
    for (int s = 0; s < 8; ++s)
      for (int i = 0; i < MR; ++i)
        dot[i] = _mm512_dpbusd_epi32(dot[i], wv[s], Bcast4(x[i * nb + b].q + 4 * s));
  }
  for (int i = 0; i < MR; ++i) {
    const __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(Half(x[i * nb + b].d)));
    acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[i]), scale, acc[i]);
  }
}

template <int MR>
void TileQ8_0x16(float* y, int64_t ldy, const BlockQ8_0* x, const int32_t* xs, int64_t nb,
                 const BlockQ8_0x16* w) {
  __m512 acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const BlockQ8_0x16& wb = w[b];
    if constexpr (MR > 1) PrefetchAhead(w + b + kPackedAhead);
    __m512i wv[8];
    for (int s = 0; s < 8; ++s) wv[s] = _mm512_loadu_si512(wb.q[s]);
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb.d)));
    AddPackedBlock<MR>(wv, 128, dw, x, xs, nb, b, acc);  // stored as q + 128
  }
  for (int i = 0; i < MR; ++i) _mm512_storeu_ps(y + i * ldy, acc[i]);
}

template <int MR>
void TileQ4_0x16(float* y, int64_t ldy, const BlockQ8_0* x, const int32_t* xs, int64_t nb,
                 const BlockQ4_0x16* w) {
  __m512 acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm512_setzero_ps();
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  for (int64_t b = 0; b < nb; ++b) {
    const BlockQ4_0x16& wb = w[b];
    if constexpr (MR > 1) PrefetchAhead(w + b + kPackedAhead);
    __m512i wv[8];  // low nibbles: elements 4s .. 4s + 3, high: 16 + 4s .. 16 + 4s + 3
    for (int s = 0; s < 4; ++s) {
      const __m512i v = _mm512_loadu_si512(wb.nib[s]);
      wv[s] = _mm512_and_si512(v, low4);
      wv[4 + s] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb.d)));
    AddPackedBlock<MR>(wv, 8, dw, x, xs, nb, b, acc);  // nibbles are q + 8
  }
  for (int i = 0; i < MR; ++i) _mm512_storeu_ps(y + i * ldy, acc[i]);
}

constexpr int kPackedTileRows = 8;  // activation rows per packed tile

// tile(std::integral_constant<int, n>) for n = `rows` in 1 .. sizeof...(M).
template <typename F, int... M>
inline void WithRows(int rows, const F& tile, std::integer_sequence<int, M...>) {
  ((rows == M + 1 ? tile(std::integral_constant<int, M + 1>{}) : void()), ...);
}

// Activation blocks of kTB rows outermost (they stay in L2), then 16-row weight groups (one
// group's blocks stay in L1 across the activation rows), then tiles of up to 8 activation rows:
// tile(rows, y, x, xs, w) with rows a std::integral_constant.
template <typename BW, typename Tile>
void BlockedPacked(float* y, int64_t ldy, const BlockQ8_0* x, const int32_t* xs, int64_t T,
                   const BW* w, int64_t nr, int64_t K, const Tile& tile) {
  const int64_t nb = K / kQBlock;
  for (int64_t tb = 0; tb < T; tb += kTB) {
    const int64_t te = tb + kTB < T ? tb + kTB : T;
    for (int64_t g = 0; g < nr / kPackRows; ++g) {
      const BW* wg = w + g * nb;
      for (int64_t t = tb; t < te; t += kPackedTileRows) {
        float* yt = y + t * ldy + g * kPackRows;
        const BlockQ8_0* xt = x + t * nb;
        const int32_t* st = xs + t * nb;
        WithRows(
            static_cast<int>(te - t < kPackedTileRows ? te - t : kPackedTileRows),
            [&](auto rows) { tile(rows, yt, xt, st, wg); },
            std::make_integer_sequence<int, kPackedTileRows>());
      }
    }
  }
}

void GemmQ8_0x16(float* y, int64_t ldy, const BlockQ8_0* x, const int32_t* xs, int64_t T,
                 const BlockQ8_0x16* w, int64_t nr, int64_t K) {
  const int64_t nb = K / kQBlock;
  BlockedPacked(y, ldy, x, xs, T, w, nr, K,
                [&](auto rows, float* yt, auto* xt, auto* st, auto* wg) {
                  TileQ8_0x16<decltype(rows)::value>(yt, ldy, xt, st, nb, wg);
                });
}

void GemmQ4_0x16(float* y, int64_t ldy, const BlockQ8_0* x, const int32_t* xs, int64_t T,
                 const BlockQ4_0x16* w, int64_t nr, int64_t K) {
  const int64_t nb = K / kQBlock;
  BlockedPacked(y, ldy, x, xs, T, w, nr, K,
                [&](auto rows, float* yt, auto* xt, auto* st, auto* wg) {
                  TileQ4_0x16<decltype(rows)::value>(yt, ldy, xt, st, nb, wg);
                });
}

// ---- operand preparation ----------------------------------------------------------------------
void F32ToBf16(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
    _mm512_storeu_si512(y + i, (__m512i)v);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = Mask16(n - i < 16 ? n - i : 16);
    const __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x + i));
    _mm256_mask_storeu_epi16(y + i, m, (__m256i)v);
  }
}

void F16ToBf16(const uint16_t* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = Mask16(n - i < 16 ? n - i : 16);
    const __m512 v = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i));
    _mm256_mask_storeu_epi16(y + i, m, (__m256i)_mm512_cvtneps_pbh(v));
  }
}

void F16ToF32Rows(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = Mask16(n - i < 16 ? n - i : 16);
    _mm512_mask_storeu_ps(y + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i)));
  }
}

void QuantizeRowsQ8_0(const float* x, BlockQ8_0* y, int64_t n) {
  const __m512 sign_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  for (int64_t b = 0; b < n / kQBlock; ++b) {
    const __m512 v0 = _mm512_loadu_ps(x + b * kQBlock);
    const __m512 v1 = _mm512_loadu_ps(x + b * kQBlock + 16);
    const __m512 a = _mm512_max_ps(_mm512_and_ps(v0, sign_mask), _mm512_and_ps(v1, sign_mask));
    const float amax = _mm512_reduce_max_ps(a);
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[b].d = static_cast<uint16_t>(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT));
    const __m512 s = _mm512_set1_ps(id);
    // Round half away from zero, as the scalar twin's lround does.
    const __m512i q0 = _mm512_cvtps_epi32(_mm512_roundscale_ps(
        _mm512_add_ps(_mm512_mul_ps(v0, s),
                      _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v0, _mm512_setzero_ps(), _CMP_LT_OQ),
                                           _mm512_set1_ps(0.5f), _mm512_set1_ps(-0.5f))),
        _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC));
    const __m512i q1 = _mm512_cvtps_epi32(_mm512_roundscale_ps(
        _mm512_add_ps(_mm512_mul_ps(v1, s),
                      _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v1, _mm512_setzero_ps(), _CMP_LT_OQ),
                                           _mm512_set1_ps(0.5f), _mm512_set1_ps(-0.5f))),
        _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].q), _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].q + 16), _mm512_cvtsepi32_epi8(q1));
  }
}

}  // namespace
}  // namespace elm

#pragma GCC pop_options

namespace elm {
// Outside the AVX-512 region: this runs on every CPU, before we know what it supports.
const CpuKernels* Avx512Kernels() {
  // clang-format off
  static const CpuKernels k{"avx512",    GemmBf16,    GemmF32,   GemmF16,
                            GemmQ8_0,    GemmQ4_0,    GemmQ8_0x16, GemmQ4_0x16,
                            F32ToBf16,   F16ToBf16,   F16ToF32Rows, QuantizeRowsQ8_0};
  // clang-format on
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                         __builtin_cpu_supports("avx512bf16") &&
                         __builtin_cpu_supports("avx512vnni");
  return ok ? &k : nullptr;
}
}  // namespace elm

#else
namespace elm {
const CpuKernels* Avx512Kernels() {
  return nullptr;
}
}  // namespace elm
#endif
