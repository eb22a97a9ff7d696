#include "kernels/cross_entropy.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "base/error.h"
#include "base/simd_clones.h"
#include "kernels/fast_exp.h"

namespace elm {

namespace {

// Σ_j e^(row[j] − mx) over a row: 16 float partial sums, folded into a double every 4096 columns.
ELM_CLONES double SumExp(const float* row, int64_t V, float mx) {
  double total = 0;
  for (int64_t j0 = 0; j0 < V; j0 += 4096) {
    const int64_t j1 = std::min(V, j0 + 4096);
    float acc[16] = {};
    int64_t j = j0;
    for (; j + 16 <= j1; j += 16)
      for (int k = 0; k < 16; ++k) acc[k] += ExpNonPositive(row[j + k] - mx);
    for (; j < j1; ++j) acc[0] += ExpNonPositive(row[j] - mx);
    double part = 0;
    for (float a : acc) part += a;
    total += part;
  }
  return total;
}

// drow[j] = k · e^(row[j] − l) (drow may alias row).
ELM_CLONES void ScaledSoftmax(float* drow, const float* row, int64_t V, float l, float k) {
  for (int64_t j = 0; j < V; ++j) drow[j] = k * ExpNonPositive(row[j] - l);
}

}  // namespace

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
    const float mx = RowMax(row, V);
    const double l = static_cast<double>(mx) + std::log(SumExp(row, V, mx));
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
    ScaledSoftmax(drow, row, V, l, k);
    drow[targets[i]] -= ce_scale;
  }
}

void TargetLogProbs(float* logp, const float* logits, const float* lse, const int* targets,
                    int64_t N, int64_t V, int ignore_index) {
  for (int64_t i = 0; i < N; ++i)
    logp[i] = targets[i] == ignore_index ? 0.0f : logits[i * V + targets[i]] - lse[i];
}

void CrossEntropyBackwardRows(float* dlogits, const float* logits, const float* lse,
                              const int* targets, const float* scale, int64_t N, int64_t V,
                              int ignore_index) {
#pragma omp parallel for schedule(static) if (N * V >= (1 << 16))
  for (int64_t i = 0; i < N; ++i) {
    const float* row = logits + i * V;
    float* drow = dlogits + i * V;
    if (targets[i] == ignore_index || scale[i] == 0.0f) {
      std::fill(drow, drow + V, 0.0f);
      continue;
    }
    ScaledSoftmax(drow, row, V, lse[i], scale[i]);
    drow[targets[i]] -= scale[i];
  }
}

}  // namespace elm
