// Fast causal GQA attention: each work item is one (query position, KV head) pair and serves all
// the query heads that share that KV head, so every cached key and value row is read once per
// position instead of once per query head. Loops are written to auto-vectorize (multiversioned).
#include <cmath>
#include <vector>

#include "kernels/attention.h"
#include "kernels/simd_clones.h"

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
  const V4 s4 = __builtin_shufflevector(s8, s8, 0, 1, 2, 3) +
                __builtin_shufflevector(s8, s8, 4, 5, 6, 7);
  float sum = (s4[0] + s4[2]) + (s4[1] + s4[3]);
  for (; d < n; ++d) sum += a[d] * b[d];
  return sum;
}

// scores[g][j] = q_g · K_j · scale for j < n, for the G query heads of one KV head.
ELM_CLONES void Scores(float* scores, int stride, const float* q, int G, const float* keys, int n,
                       int hd, float scale) {
  for (int j = 0; j < n; ++j) {
    const float* k = keys + static_cast<size_t>(j) * hd;
    for (int g = 0; g < G; ++g)
      scores[static_cast<size_t>(g) * stride + j] =
          DotTree(q + static_cast<size_t>(g) * hd, k, hd) * scale;
  }
}

// out_g = Σ_j p[g][j] · V_j.
ELM_CLONES void Mix(float* out, const float* p, int stride, int G, const float* values, int n,
                    int hd) {
  for (int g = 0; g < G; ++g)
    for (int d = 0; d < hd; ++d) out[static_cast<size_t>(g) * hd + d] = 0;
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

ELM_CLONES void SoftmaxRow(float* s, int n) {
  float mx = -INFINITY;
  for (int j = 0; j < n; ++j) mx = s[j] > mx ? s[j] : mx;
  float sum = 0;
  for (int j = 0; j < n; ++j) {
    s[j] = std::exp(s[j] - mx);
    sum += s[j];
  }
  const float inv = 1.0f / sum;
  for (int j = 0; j < n; ++j) s[j] *= inv;
}

}  // namespace

void CausalAttentionFast(float* out, const float* q, int T, int past, int layer, int n_heads,
                         int n_kv_heads, int head_dim, const KVCache& cache) {
  const int G = n_heads / n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const int64_t work = static_cast<int64_t>(T) * n_kv_heads;
  const int stride = past + T;
#pragma omp parallel
  {
    std::vector<float> scores(static_cast<size_t>(G) * stride);
#pragma omp for schedule(dynamic, 1)
    for (int64_t w = 0; w < work; ++w) {
      const int t = static_cast<int>(w / n_kv_heads), kvh = static_cast<int>(w % n_kv_heads);
      const int n = past + t + 1;  // bottom-right aligned causal mask
      const size_t qoff = (static_cast<size_t>(t) * n_heads + static_cast<size_t>(kvh) * G) * head_dim;
      Scores(scores.data(), stride, q + qoff, G, cache.K(layer, kvh, 0), n, head_dim, scale);
      for (int g = 0; g < G; ++g) SoftmaxRow(scores.data() + static_cast<size_t>(g) * stride, n);
      Mix(out + qoff, scores.data(), stride, G, cache.V(layer, kvh, 0), n, head_dim);
    }
  }
}

}  // namespace elm
