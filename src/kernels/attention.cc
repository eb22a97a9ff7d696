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

}  // namespace elm
