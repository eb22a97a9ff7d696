#include "kernels/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "base/error.h"

namespace elm {

CrossEntropyStats CrossEntropyForward(float* lse, const float* logits, const int* targets,
                                      int64_t N, int64_t V, int ignore_index) {
  for (int64_t i = 0; i < N; ++i)
    if (targets[i] != ignore_index && (targets[i] < 0 || targets[i] >= V))
      Fail("target id ", targets[i], " at row ", i, " is outside the vocabulary [0, ", V, ")");
  std::vector<double> ce(static_cast<size_t>(N), 0.0);
#pragma omp parallel for schedule(static) if (N * V >= (1 << 16))
  for (int64_t i = 0; i < N; ++i) {
    if (targets[i] == ignore_index) {
      lse[i] = 0;
      continue;
    }
    const float* row = logits + i * V;
    float mx = row[0];
    for (int64_t j = 1; j < V; ++j) mx = std::max(mx, row[j]);
    // f32 exponentials (the backward pass recomputes them the same way), summed in double with
    // four partial sums so the additions do not serialize the loop.
    double s4[4] = {0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 4 <= V; j += 4)
      for (int k = 0; k < 4; ++k) s4[k] += std::exp(row[j + k] - mx);
    for (; j < V; ++j) s4[0] += std::exp(row[j] - mx);
    const double sum = (s4[0] + s4[1]) + (s4[2] + s4[3]);
    const double l = static_cast<double>(mx) + std::log(sum);
    lse[i] = static_cast<float>(l);
    ce[i] = l - static_cast<double>(row[targets[i]]);
  }
  // Serial sums in row order: the loss does not depend on the thread count.
  CrossEntropyStats s;
  for (int64_t i = 0; i < N; ++i) {
    if (targets[i] == ignore_index) continue;
    s.ce_sum += ce[i];
    s.lse_sq_sum += static_cast<double>(lse[i]) * lse[i];
    ++s.n_valid;
  }
  return s;
}

void CrossEntropyBackward(float* dlogits, const float* logits, const float* lse, const int* targets,
                          int64_t N, int64_t V, int ignore_index, float ce_scale, float z_scale) {
#pragma omp parallel for schedule(static) if (N * V >= (1 << 16))
  for (int64_t i = 0; i < N; ++i) {
    const float* row = logits + i * V;
    float* drow = dlogits + i * V;
    if (targets[i] == ignore_index) {
      std::fill(drow, drow + V, 0.0f);
      continue;
    }
    const float l = lse[i];
    const float k = ce_scale + 2.0f * z_scale * l;  // ∂/∂logit_j = k·p_j − ce_scale·[j = target]
    for (int64_t j = 0; j < V; ++j) drow[j] = k * std::exp(row[j] - l);
    drow[targets[i]] -= ce_scale;
  }
}

}  // namespace elm
