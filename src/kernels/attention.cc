#include "kernels/attention.h"

#include "kernels/blas.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/matmul.h"

namespace elm {

void CausalAttention(float* out, const float* q, int T, int past, int n_heads, int n_kv_heads,
                     int head_dim, const KvLayerView& cache) {
  const int group = n_heads / n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const int64_t work = static_cast<int64_t>(T) * n_heads;
#pragma omp parallel
  {
    std::vector<float> scores(static_cast<size_t>(past + T)), row(static_cast<size_t>(head_dim));
#pragma omp for schedule(static)
    for (int64_t w = 0; w < work; ++w) {
      const int t = static_cast<int>(w / n_heads), h = static_cast<int>(w % n_heads);
      const int kvh = h / group;
      const int n_keys = past + t + 1;
      const float* qv = q + (static_cast<size_t>(t) * n_heads + h) * head_dim;
      float mx = -INFINITY;
      for (int j = 0; j < n_keys; ++j) {
        cache.LoadK(kvh, j, row.data());
        scores[j] = Dot(qv, row.data(), head_dim) * scale;
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
        cache.LoadV(kvh, j, row.data());
        const float* vv = row.data();
        for (int d = 0; d < head_dim; ++d) o[d] += p * vv[d];
      }
    }
  }
}

void AttentionForward(float* out, float* lse, const float* qkv, int B, int T, int n_heads,
                      int n_kv_heads, int head_dim) {
  const int group = n_heads / n_kv_heads;
  const int C3 = (n_heads + 2 * n_kv_heads) * head_dim;
  const int HD = n_heads * head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  // Per (row, head): scores and weighted values as two GEMMs through BLAS, reading Q, K and V in
  // place (leading dimension C3). The full T × T score block is computed and the causal half
  // masked: BLAS at twice the work still beats the triangular loop by an order of magnitude.
  // (row, head) pairs run in parallel; inside a parallel region OpenBLAS's OpenMP build runs each
  // product on the calling thread.
  const int64_t pairs = static_cast<int64_t>(B) * n_heads;
#pragma omp parallel
  {
    std::vector<float> probs(static_cast<size_t>(T) * T);  // [T, T]
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < pairs; ++bh) {
      const int b = static_cast<int>(bh / n_heads), h = static_cast<int>(bh % n_heads);
      const float* rows = qkv + static_cast<int64_t>(b) * T * C3;
      const int kvh = h / group;
      const float* q = rows + h * head_dim;
      const float* k = rows + (n_heads + kvh) * head_dim;
      const float* v = rows + (n_heads + n_kv_heads + kvh) * head_dim;
      Sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, head_dim, scale, q, C3, k, C3, 0.0f,
            probs.data(), T);
      float* l = lse + (static_cast<int64_t>(b) * n_heads + h) * T;
      for (int t = 0; t < T; ++t) {
        float* p = probs.data() + static_cast<int64_t>(t) * T;
        float mx = -INFINITY;
        for (int j = 0; j <= t; ++j) mx = std::max(mx, p[j]);
        double sum = 0;
        for (int j = 0; j <= t; ++j) {
          p[j] = std::exp(p[j] - mx);
          sum += p[j];
        }
        const auto inv = static_cast<float>(1.0 / sum);
        for (int j = 0; j <= t; ++j) p[j] *= inv;
        for (int j = t + 1; j < T; ++j) p[j] = 0.0f;
        l[t] = mx + static_cast<float>(std::log(sum));
      }
      Sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, head_dim, T, 1.0f, probs.data(), T, v, C3,
            0.0f, out + static_cast<int64_t>(b) * T * HD + h * head_dim, HD);
    }
  }
}

void AttentionBackward(float* dqkv, const float* dout, const float* out, const float* lse,
                       const float* qkv, int B, int T, int n_heads, int n_kv_heads, int head_dim) {
  const int group = n_heads / n_kv_heads;
  const int C3 = (n_heads + 2 * n_kv_heads) * head_dim;
  const int HD = n_heads * head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  // (row, KV head) pairs run in parallel: the query heads sharing a KV head add their dK and dV
  // in head order on one thread, so the sums do not depend on the thread count.
  const int64_t pairs = static_cast<int64_t>(B) * n_kv_heads;
#pragma omp parallel
  {
    std::vector<float> probs(static_cast<size_t>(T) * T), dprobs(probs.size());  // [T, T]
#pragma omp for schedule(static)
    for (int64_t bk = 0; bk < pairs; ++bk) {
      const int b = static_cast<int>(bk / n_kv_heads), kvh = static_cast<int>(bk % n_kv_heads);
      const float* rows = qkv + static_cast<int64_t>(b) * T * C3;
      float* drows = dqkv + static_cast<int64_t>(b) * T * C3;
      const float* dob = dout + static_cast<int64_t>(b) * T * HD;
      const float* ob = out + static_cast<int64_t>(b) * T * HD;
      for (int h = kvh * group; h < (kvh + 1) * group; ++h) {
        const int qo = h * head_dim, ko = (n_heads + kvh) * head_dim;
        const int vo = (n_heads + n_kv_heads + kvh) * head_dim;
        const float* l = lse + (static_cast<int64_t>(b) * n_heads + h) * T;
        // Recompute P = softmax(scale · Q Kᵀ) from the saved logsumexp.
        Sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, head_dim, scale, rows + qo, C3,
              rows + ko, C3, 0.0f, probs.data(), T);
        // dP = dO Vᵀ
        Sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, head_dim, 1.0f, dob + qo, HD,
              rows + vo, C3, 0.0f, dprobs.data(), T);
        for (int t = 0; t < T; ++t) {
          float* p = probs.data() + static_cast<int64_t>(t) * T;
          float* dp = dprobs.data() + static_cast<int64_t>(t) * T;
          // softmax backward: ∂s_j = p_j (∂p_j − Σ_i p_i ∂p_i), and Σ_i p_i ∂p_i = dout · out
          const float delta = Dot(dob + static_cast<int64_t>(t) * HD + qo,
                                  ob + static_cast<int64_t>(t) * HD + qo, head_dim);
          for (int j = 0; j <= t; ++j) {
            p[j] = std::exp(p[j] - l[t]);
            dp[j] = p[j] * (dp[j] - delta) * scale;  // becomes ∂(scaled scores)·scale = dS
          }
          for (int j = t + 1; j < T; ++j) p[j] = dp[j] = 0.0f;
        }
        // dQ += dS K;  dK += dSᵀ Q;  dV += Pᵀ dO.
        Sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, head_dim, T, 1.0f, dprobs.data(), T,
              rows + ko, C3, 1.0f, drows + qo, C3);
        Sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, head_dim, T, 1.0f, dprobs.data(), T,
              rows + qo, C3, 1.0f, drows + ko, C3);
        Sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, head_dim, T, 1.0f, probs.data(), T,
              dob + qo, HD, 1.0f, drows + vo, C3);
      }
    }
  }
}

}  // namespace elm
