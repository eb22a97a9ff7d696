#include "kernels/attention.h"

#include <cmath>
#include <vector>

#include "kernels/matmul.h"

namespace elm {

void CausalAttention(float* out, const float* q, int T, int past, int layer, int n_heads,
                     int n_kv_heads, int head_dim, const KVCache& cache) {
  const int group = n_heads / n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const int64_t work = static_cast<int64_t>(T) * n_heads;
#pragma omp parallel
  {
    std::vector<float> scores(static_cast<size_t>(past + T));
#pragma omp for schedule(static)
    for (int64_t w = 0; w < work; ++w) {
      const int t = static_cast<int>(w / n_heads), h = static_cast<int>(w % n_heads);
      const int kvh = h / group;
      const int n_keys = past + t + 1;
      const float* qv = q + (static_cast<size_t>(t) * n_heads + h) * head_dim;
      float mx = -INFINITY;
      for (int j = 0; j < n_keys; ++j) {
        scores[j] = Dot(qv, cache.K(layer, kvh, j), head_dim) * scale;
        mx = std::max(mx, scores[j]);
      }
      double sum = 0;
      for (int j = 0; j < n_keys; ++j) {
        scores[j] = std::exp(scores[j] - mx);
        sum += scores[j];
      }
      const auto inv = static_cast<float>(1.0 / sum);
      float* o = out + (static_cast<size_t>(t) * n_heads + h) * head_dim;
      for (int d = 0; d < head_dim; ++d) o[d] = 0;
      for (int j = 0; j < n_keys; ++j) {
        const float p = scores[j] * inv;
        const float* vv = cache.V(layer, kvh, j);
        for (int d = 0; d < head_dim; ++d) o[d] += p * vv[d];
      }
    }
  }
}

void AttentionForward(float* out, float* lse, const float* qkv, int B, int T, int n_heads,
                      int n_kv_heads, int head_dim) {
  const int group = n_heads / n_kv_heads;
  const int64_t C3 = static_cast<int64_t>(n_heads + 2 * n_kv_heads) * head_dim;
  const int64_t HD = static_cast<int64_t>(n_heads) * head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const int64_t work = static_cast<int64_t>(B) * n_heads;
#pragma omp parallel
  {
    std::vector<float> scores(static_cast<size_t>(T));
#pragma omp for schedule(static)
    for (int64_t w = 0; w < work; ++w) {
      const int b = static_cast<int>(w / n_heads), h = static_cast<int>(w % n_heads);
      const int kvh = h / group;
      const float* rows = qkv + static_cast<int64_t>(b) * T * C3;
      const float* kbase = rows + static_cast<int64_t>(n_heads + kvh) * head_dim;
      const float* vbase = rows + static_cast<int64_t>(n_heads + n_kv_heads + kvh) * head_dim;
      for (int t = 0; t < T; ++t) {
        const float* qv = rows + t * C3 + static_cast<int64_t>(h) * head_dim;
        float mx = -INFINITY;
        for (int j = 0; j <= t; ++j) {
          scores[j] = Dot(qv, kbase + j * C3, head_dim) * scale;
          mx = std::max(mx, scores[j]);
        }
        double sum = 0;
        for (int j = 0; j <= t; ++j) {
          scores[j] = std::exp(scores[j] - mx);
          sum += scores[j];
        }
        const auto inv = static_cast<float>(1.0 / sum);
        float* o = out + (static_cast<int64_t>(b) * T + t) * HD + static_cast<int64_t>(h) * head_dim;
        for (int d = 0; d < head_dim; ++d) o[d] = 0;
        for (int j = 0; j <= t; ++j) {
          const float p = scores[j] * inv;
          const float* vv = vbase + j * C3;
          for (int d = 0; d < head_dim; ++d) o[d] += p * vv[d];
        }
        lse[(static_cast<int64_t>(b) * n_heads + h) * T + t] =
            mx + static_cast<float>(std::log(sum));
      }
    }
  }
}

void AttentionBackward(float* dqkv, const float* dout, const float* out, const float* lse,
                       const float* qkv, int B, int T, int n_heads, int n_kv_heads, int head_dim) {
  const int group = n_heads / n_kv_heads;
  const int64_t C3 = static_cast<int64_t>(n_heads + 2 * n_kv_heads) * head_dim;
  const int64_t HD = static_cast<int64_t>(n_heads) * head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  // One work item per (row, KV head): its keys and values collect gradient from the `group`
  // query heads that share them, so no two threads ever write the same element.
  const int64_t work = static_cast<int64_t>(B) * n_kv_heads;
#pragma omp parallel
  {
    std::vector<float> probs(static_cast<size_t>(T));
#pragma omp for schedule(static)
    for (int64_t w = 0; w < work; ++w) {
      const int b = static_cast<int>(w / n_kv_heads), kvh = static_cast<int>(w % n_kv_heads);
      const int64_t row0 = static_cast<int64_t>(b) * T;
      const float* rows = qkv + row0 * C3;
      float* drows = dqkv + row0 * C3;
      const int64_t koff = static_cast<int64_t>(n_heads + kvh) * head_dim;
      const int64_t voff = static_cast<int64_t>(n_heads + n_kv_heads + kvh) * head_dim;
      for (int h = kvh * group; h < (kvh + 1) * group; ++h) {
        const int64_t qoff = static_cast<int64_t>(h) * head_dim;
        for (int t = 0; t < T; ++t) {
          const float* qv = rows + t * C3 + qoff;
          float* dq = drows + t * C3 + qoff;
          const float* dov = dout + (row0 + t) * HD + qoff;
          const float* ov = out + (row0 + t) * HD + qoff;
          const float l = lse[(static_cast<int64_t>(b) * n_heads + h) * T + t];
          for (int j = 0; j <= t; ++j)
            probs[j] = std::exp(Dot(qv, rows + j * C3 + koff, head_dim) * scale - l);
          // softmax backward: ∂s_j = p_j (∂p_j − Σ_i p_i ∂p_i), and Σ_i p_i ∂p_i = dout · out
          const float delta = Dot(dov, ov, head_dim);
          for (int j = 0; j <= t; ++j) {
            const float* kj = rows + j * C3 + koff;
            const float* vj = rows + j * C3 + voff;
            float* dkj = drows + j * C3 + koff;
            float* dvj = drows + j * C3 + voff;
            const float p = probs[j];
            const float ds = p * (Dot(dov, vj, head_dim) - delta) * scale;
            for (int d = 0; d < head_dim; ++d) {
              dq[d] += ds * kj[d];
              dkj[d] += ds * qv[d];
              dvj[d] += p * dov[d];
            }
          }
        }
      }
    }
  }
}

}  // namespace elm
