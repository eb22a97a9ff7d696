// Fast causal GQA attention: each work item is one (query position, KV head) pair and serves all
// the query heads that share that KV head, so every cached key and value row is read once per
// position instead of once per query head. Loops are written to auto-vectorize (multiversioned).
// A bf16/f16 cache is widened to f32 a block of positions at a time, into scratch that stays in
// L1, and the same f32 code runs on it.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "base/simd_clones.h"
#include "kernels/attention.h"
#include "kernels/cpu_kernels.h"
#include "kernels/fast_exp.h"

namespace elm {
namespace {

// GCC's generic vectors: one 16-lane register per clone's widest unit (zmm, 2 ymm or 4 xmm).
typedef float V16 __attribute__((vector_size(64)));
typedef float V8 __attribute__((vector_size(32)));
typedef float V4 __attribute__((vector_size(16)));

// a · b with 16 partial sums reduced by halves: vectorized and deterministic. (An `omp simd
// reduction` over floats must keep the lanes' order and compiles to 16 dependent scalar adds.)
__attribute__((always_inline)) inline float DotTree(const float* a, const float* b, int n) {
  V16 acc = {};
  int d = 0;
  for (; d + 16 <= n; d += 16) {
    V16 x, y;
    __builtin_memcpy(&x, a + d, sizeof x);
    __builtin_memcpy(&y, b + d, sizeof y);
    acc += x * y;
  }
  const V8 s8 = __builtin_shufflevector(acc, acc, 0, 1, 2, 3, 4, 5, 6, 7) +
                __builtin_shufflevector(acc, acc, 8, 9, 10, 11, 12, 13, 14, 15);
  const V4 s4 =
      __builtin_shufflevector(s8, s8, 0, 1, 2, 3) + __builtin_shufflevector(s8, s8, 4, 5, 6, 7);
  float sum = (s4[0] + s4[2]) + (s4[1] + s4[3]);
  for (; d < n; ++d) sum += a[d] * b[d];
  return sum;
}

// scores[g][j] = q_g · K_j · scale for j < n, for the G query heads of one KV head.
ELM_CLONES void ScoresAny(float* scores, int stride, const float* q, int G, const float* keys,
                          int n, int hd, float scale) {
  for (int j = 0; j < n; ++j) {
    const float* k = keys + static_cast<size_t>(j) * hd;
    for (int g = 0; g < G; ++g)
      scores[static_cast<size_t>(g) * stride + j] =
          DotTree(q + static_cast<size_t>(g) * hd, k, hd) * scale;
  }
}

// out_g += Σ_j p[g][j] · V_j.
ELM_CLONES void MixAny(float* out, const float* p, int stride, int G, const float* values, int n,
                       int hd) {
  for (int j = 0; j < n; ++j) {
    const float* v = values + static_cast<size_t>(j) * hd;
    for (int g = 0; g < G; ++g) {
      const float pj = p[static_cast<size_t>(g) * stride + j];
      float* o = out + static_cast<size_t>(g) * hd;
#pragma omp simd
      for (int d = 0; d < hd; ++d) o[d] += pj * v[d];
    }
  }
}

// The common shape (4 query heads per KV head, as every OpenELM; head_dim 64 or 128) with the
// head size known at compile time: the dot products of 4 keys with the 4 heads are computed side
// by side and reduced together with the same additions, in the same order, as DotTree (so a
// key's score has the same bits wherever it falls in a group of 4, and for the last n % 4 keys),
// and the outputs of the four heads stay in registers across a block of positions (the same
// order of additions as MixAny).
//
// The reduction ends with two steps over 4 keys' vectors t[k], each laid out in 4-lane blocks
// [head 0 .. head 3] holding a head's 4 sums s4 (DotTree's s4). Each step adds pairs of lanes of
// two vectors (an addition's operands may come in either order: float addition is commutative
// bit for bit).

// Step 3 (lanes 0 + 2 and 1 + 3 of each block): per block [P's two sums, Q's two sums].
__attribute__((always_inline)) inline void PairsOf4(V16 p, V16 q, V16& r) {
  r = __builtin_shufflevector(p, q, 0, 1, 18, 19, 4, 5, 22, 23, 8, 9, 26, 27, 12, 13, 30, 31) +
      __builtin_shufflevector(p, q, 2, 3, 16, 17, 6, 7, 20, 21, 10, 11, 24, 25, 14, 15, 28, 29);
}
// Step 4 (the two sums of a pair): per block [P's first, P's second, Q's first, Q's second].
__attribute__((always_inline)) inline void LastOf4(V16 p, V16 q, V16& r) {
  r = __builtin_shufflevector(p, q, 0, 2, 16, 18, 4, 6, 20, 22, 8, 10, 24, 26, 12, 14, 28, 30) +
      __builtin_shufflevector(p, q, 1, 3, 17, 19, 5, 7, 21, 23, 9, 11, 25, 27, 13, 15, 29, 31);
}

// One key's 64 partial sums (4 heads × DotTree's 16 lanes) without broadcasting the key: qr[c][r]
// holds, in 4-lane block b, head (b + r) % 4's query at dims 16 c + 4 b .. + 3, so part[r] =
// Σ_c qr[c][r] · key[16 c .. 16 c + 15] holds lane 4 b + i of head (b + r) % 4. DotTree's first
// two halvings then cost one block permutation each: out block g = head g's 4 sums (its s4).
template <int HD>
__attribute__((always_inline)) inline void KeyPartials(const V16 (*qr)[4], const float* k,
                                                       V16& out) {
  V16 part[4] = {};
  for (int c = 0; c < HD / 16; ++c) {
    V16 kv;
    __builtin_memcpy(&kv, k + 16 * c, sizeof kv);
    for (int r = 0; r < 4; ++r) part[r] += qr[c][r] * kv;
  }
  // Lanes i and i + 8 of a head: block b of part[r] with block b + 2 of part[r + 2].
  const V16 s0 = part[0] + __builtin_shufflevector(part[2], part[2], 8, 9, 10, 11, 12, 13, 14, 15,
                                                   0, 1, 2, 3, 4, 5, 6, 7);
  const V16 s1 = part[1] + __builtin_shufflevector(part[3], part[3], 8, 9, 10, 11, 12, 13, 14, 15,
                                                   0, 1, 2, 3, 4, 5, 6, 7);
  // s0 block b: head b; s1 block b: head b + 1. Sums i and i + 4 of head b: s0 block b and s1
  // block b - 1.
  out = s0 + __builtin_shufflevector(s1, s1, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11);
}

// Asks for the cache lines of rows[at + kPrefetchAhead .. + count) (floats): 8 KB ahead, 32 rows
// of head_dim 64. With the keys and values read at the core's compute rate, the hardware
// prefetcher alone leaves the loads waiting (docs/performance.md, "Decode attention at depth").
// A prefetch never faults, so the lines may lie past the rows in use; the address is computed as
// an integer so that no pointer leaves its array.
constexpr size_t kPrefetchAhead = 32 * 64;
__attribute__((always_inline)) inline void PrefetchAhead(const float* rows, size_t at,
                                                         size_t count) {
  const uintptr_t first = reinterpret_cast<uintptr_t>(rows) + (at + kPrefetchAhead) * sizeof(float);
  for (size_t b = 0; b < count * sizeof(float); b += 64)
    __builtin_prefetch(reinterpret_cast<const void*>(first + b));
}

// Steps 3 and 4 over 4 keys' t[k], times the scale: lanes[4 g + k] = head g's score of key k.
__attribute__((always_inline)) inline void ScaledScores(const V16* t, float scale, float* lanes) {
  V16 lo, hi, s;
  PairsOf4(t[0], t[1], lo);
  PairsOf4(t[2], t[3], hi);
  LastOf4(lo, hi, s);
  s *= scale;
  __builtin_memcpy(lanes, &s, sizeof s);
}

template <int HD>
__attribute__((always_inline)) inline void ScoresG4(float* scores, int stride, const float* q,
                                                    const float* keys, int n, float scale) {
  V16 qr[HD / 16][4];
  for (int c = 0; c < HD / 16; ++c)
    for (int r = 0; r < 4; ++r) {
      float lanes[16];
      for (int b = 0; b < 4; ++b)
        for (int i = 0; i < 4; ++i) lanes[4 * b + i] = q[(b + r) % 4 * HD + 16 * c + 4 * b + i];
      __builtin_memcpy(&qr[c][r], lanes, sizeof lanes);
    }
  int j = 0;
  float lanes[16];  // [head][key]
  for (; j + 4 <= n; j += 4) {
    PrefetchAhead(keys, static_cast<size_t>(j) * HD, 4 * HD);
    V16 t[4];
    for (int k = 0; k < 4; ++k) KeyPartials<HD>(qr, keys + static_cast<size_t>(j + k) * HD, t[k]);
    ScaledScores(t, scale, lanes);
    for (int g = 0; g < 4; ++g)
      __builtin_memcpy(scores + static_cast<size_t>(g) * stride + j, lanes + 4 * g,
                       4 * sizeof(float));
  }
  if (j < n) {  // the last n % 4 keys: the same sums, the missing keys' lanes unused
    V16 t[4] = {};
    for (int k = 0; j + k < n; ++k)
      KeyPartials<HD>(qr, keys + static_cast<size_t>(j + k) * HD, t[k]);
    ScaledScores(t, scale, lanes);
    for (int g = 0; g < 4; ++g)
      for (int k = 0; j + k < n; ++k)
        scores[static_cast<size_t>(g) * stride + j + k] = lanes[4 * g + k];
  }
}

template <int HD>
__attribute__((always_inline)) inline void MixG4(float* out, const float* p, int stride,
                                                 const float* values, int n) {
  for (int d0 = 0; d0 < HD; d0 += 64) {  // 4 heads × 64 dims: 16 accumulators
    V16 acc[4][4];
    for (int g = 0; g < 4; ++g)
      for (int c = 0; c < 4; ++c) __builtin_memcpy(&acc[g][c], out + g * HD + d0 + 16 * c, 64);
    for (int j = 0; j < n; ++j) {
      PrefetchAhead(values, static_cast<size_t>(j) * HD + d0, 64);
      V16 v[4];
      for (int c = 0; c < 4; ++c)
        __builtin_memcpy(&v[c], values + static_cast<size_t>(j) * HD + d0 + 16 * c, 64);
      for (int g = 0; g < 4; ++g) {
        const float pj = p[static_cast<size_t>(g) * stride + j];
        for (int c = 0; c < 4; ++c) acc[g][c] += pj * v[c];
      }
    }
    for (int g = 0; g < 4; ++g)
      for (int c = 0; c < 4; ++c) __builtin_memcpy(out + g * HD + d0 + 16 * c, &acc[g][c], 64);
  }
}

ELM_CLONES void Scores4x64(float* s, int stride, const float* q, const float* k, int n, float sc) {
  ScoresG4<64>(s, stride, q, k, n, sc);
}
ELM_CLONES void Scores4x128(float* s, int stride, const float* q, const float* k, int n, float sc) {
  ScoresG4<128>(s, stride, q, k, n, sc);
}
ELM_CLONES void Mix4x64(float* out, const float* p, int stride, const float* v, int n) {
  MixG4<64>(out, p, stride, v, n);
}
ELM_CLONES void Mix4x128(float* out, const float* p, int stride, const float* v, int n) {
  MixG4<128>(out, p, stride, v, n);
}

void Scores(float* scores, int stride, const float* q, int G, const float* keys, int n, int hd,
            float scale) {
  if (G == 4 && hd == 64)
    Scores4x64(scores, stride, q, keys, n, scale);
  else if (G == 4 && hd == 128)
    Scores4x128(scores, stride, q, keys, n, scale);
  else
    ScoresAny(scores, stride, q, G, keys, n, hd, scale);
}

void Mix(float* out, const float* p, int stride, int G, const float* values, int n, int hd) {
  if (G == 4 && hd == 64)
    Mix4x64(out, p, stride, values, n);
  else if (G == 4 && hd == 128)
    Mix4x128(out, p, stride, values, n);
  else
    MixAny(out, p, stride, G, values, n, hd);
}

// e^(s[j] − max) in place over one score row; returns the sum and sets *max. 16 partial maxima
// and sums (vectorized; ExpNonPositive is within 2e-7 relative of expf).
ELM_CLONES float ExpShifted(float* s, int n, float* max) {
  const float mx = RowMax(s, n);
  float acc[16] = {};
  int j = 0;
  for (; j + 16 <= n; j += 16)
    for (int k = 0; k < 16; ++k) {
      const float e = ExpNonPositive(s[j + k] - mx);
      s[j + k] = e;
      acc[k] += e;
    }
  for (; j < n; ++j) {
    s[j] = ExpNonPositive(s[j] - mx);
    acc[0] += s[j];
  }
  float sum = 0;
  for (float a : acc) sum += a;
  *max = mx;
  return sum;
}

ELM_CLONES void SoftmaxRow(float* s, int n) {
  float mx;
  const float inv = 1.0f / ExpShifted(s, n, &mx);
  for (int j = 0; j < n; ++j) s[j] *= inv;
}

ELM_CLONES void Bf16ToF32(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::bit_cast<float>(static_cast<uint32_t>(x[i]) << 16);
}

constexpr int kKeyBlock = 128;  // positions widened at a time for a bf16/f16 cache

// Rows [j0, j0 + n) of one KV head as f32: in place for an f32 cache, else widened into `buf`.
const float* RowsF32(const KvLayerView& cache, bool keys, int kvh, int j0, int n, int hd,
                     float* buf) {
  const void* src = keys ? cache.KRow(kvh, j0) : cache.VRow(kvh, j0);
  const int64_t count = static_cast<int64_t>(n) * hd;
  switch (cache.dtype) {
    case DType::kBF16:
      Bf16ToF32(static_cast<const uint16_t*>(src), buf, count);
      return buf;
    case DType::kF16:
      BestKernels().f16_to_f32(static_cast<const uint16_t*>(src), buf, count);
      return buf;
    default:
      return static_cast<const float*>(src);
  }
}

// Positions per kernel call over `len` positions of the cache: kKeyBlock for a bf16/f16 cache (each
// block widened into scratch), all of them for an f32 cache, read in place (a call sets up its
// queries' layout once; the scores and sums do not depend on the blocking).
int PositionsPerCall(const KvLayerView& cache, int len) {
  return cache.dtype == DType::kF32 ? std::max(len, 1) : kKeyBlock;
}

// scores[g][i] = q_g · K_(j0+i) · scale for i < len (row stride `stride`), one KV head, the keys
// visited PositionsPerCall at a time.
void ScoreRange(float* scores, int stride, const float* q, int G, const KvLayerView& cache, int kvh,
                int j0, int len, int hd, float scale, float* wide) {
  const int block = PositionsPerCall(cache, len);
  for (int b = 0; b < len; b += block) {
    const int nb = std::min(block, len - b);
    Scores(scores + b, stride, q, G, RowsF32(cache, true, kvh, j0 + b, nb, hd, wide), nb, hd,
           scale);
  }
}

// out_g += Σ_i p[g][i] · V_(j0+i) for i < len, the values visited as in ScoreRange.
void MixRange(float* out, const float* p, int stride, int G, const KvLayerView& cache, int kvh,
              int j0, int len, int hd, float* wide) {
  const int block = PositionsPerCall(cache, len);
  for (int b = 0; b < len; b += block) {
    const int nb = std::min(block, len - b);
    Mix(out, p + b, stride, G, RowsF32(cache, false, kvh, j0 + b, nb, hd, wide), nb, hd);
  }
}

// Decoding one position over a long cache (flash-decoding): each work item is a (KV head, stretch
// of kSplit positions) pair, so even 3 KV heads keep every thread busy; each stretch keeps its
// unnormalized softmax (max, sum, Σ p·V) and the stretches are merged in position order. The
// stretch length is fixed, so the result does not depend on the thread count.
constexpr int kSplit = 256;

void DecodeSplit(float* out, const float* q, int n, int n_kv_heads, int G, int hd, float scale,
                 const KvLayerView& cache) {
  const int chunks = (n + kSplit - 1) / kSplit;
  const int64_t work = static_cast<int64_t>(n_kv_heads) * chunks;
  std::vector<float> part_out(static_cast<size_t>(work) * G * hd, 0.0f);
  std::vector<float> part_max(static_cast<size_t>(work) * G), part_sum(part_max.size());
#pragma omp parallel
  {
    std::vector<float> scores(static_cast<size_t>(G) * kSplit);
    std::vector<float> wide(cache.dtype == DType::kF32 ? 0 : kKeyBlock * hd);
#pragma omp for schedule(dynamic, 1)
    for (int64_t w = 0; w < work; ++w) {
      const int kvh = static_cast<int>(w / chunks), j0 = static_cast<int>(w % chunks) * kSplit;
      const int len = std::min(kSplit, n - j0);
      ScoreRange(scores.data(), kSplit, q + static_cast<size_t>(kvh) * G * hd, G, cache, kvh, j0,
                 len, hd, scale, wide.data());
      for (int g = 0; g < G; ++g) {
        const size_t i = static_cast<size_t>(w) * G + g;
        part_sum[i] =
            ExpShifted(scores.data() + static_cast<size_t>(g) * kSplit, len, &part_max[i]);
      }
      MixRange(part_out.data() + static_cast<size_t>(w) * G * hd, scores.data(), kSplit, G, cache,
               kvh, j0, len, hd, wide.data());
    }
#pragma omp for schedule(static)
    for (int64_t hg = 0; hg < static_cast<int64_t>(n_kv_heads) * G; ++hg) {
      const int64_t kvh = hg / G, g = hg % G;
      auto at = [&](int c) { return static_cast<size_t>((kvh * chunks + c) * G + g); };
      float mx = part_max[at(0)];
      for (int c = 1; c < chunks; ++c) mx = std::max(mx, part_max[at(c)]);
      float total = 0;
      for (int c = 0; c < chunks; ++c) total += std::exp(part_max[at(c)] - mx) * part_sum[at(c)];
      float* o = out + static_cast<size_t>(hg) * hd;
      std::fill(o, o + hd, 0.0f);
      for (int c = 0; c < chunks; ++c) {
        const float wgt = std::exp(part_max[at(c)] - mx) / total;
        const float* po = part_out.data() + at(c) * hd;
        for (int d = 0; d < hd; ++d) o[d] += wgt * po[d];
      }
    }
  }
}

}  // namespace

void CausalAttentionFast(float* out, const float* q, int T, int past, int n_heads, int n_kv_heads,
                         int head_dim, const KvLayerView& cache) {
  const int G = n_heads / n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  if (T == 1 && past + 1 > kSplit) {
    DecodeSplit(out, q, past + 1, n_kv_heads, G, head_dim, scale, cache);
    return;
  }
  const int64_t work = static_cast<int64_t>(T) * n_kv_heads;
  const int stride = past + T;
#pragma omp parallel
  {
    std::vector<float> scores(static_cast<size_t>(G) * stride);
    std::vector<float> wide(cache.dtype == DType::kF32 ? 0 : kKeyBlock * head_dim);
#pragma omp for schedule(dynamic, 1)
    for (int64_t w = 0; w < work; ++w) {
      const int t = static_cast<int>(w / n_kv_heads), kvh = static_cast<int>(w % n_kv_heads);
      const int n = past + t + 1;  // bottom-right aligned causal mask
      const size_t qoff =
          (static_cast<size_t>(t) * n_heads + static_cast<size_t>(kvh) * G) * head_dim;
      // Blocks of positions keep every per-position sum in position order: an f32 cache gives
      // the same bits as one pass over all n.
      ScoreRange(scores.data(), stride, q + qoff, G, cache, kvh, 0, n, head_dim, scale,
                 wide.data());
      for (int g = 0; g < G; ++g) SoftmaxRow(scores.data() + static_cast<size_t>(g) * stride, n);
      std::fill(out + qoff, out + qoff + static_cast<size_t>(G) * head_dim, 0.0f);
      MixRange(out + qoff, scores.data(), stride, G, cache, kvh, 0, n, head_dim, wide.data());
    }
  }
}

}  // namespace elm
