#include "train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "base/error.h"

namespace elm {

float TorchVectorNorm(const float* x, size_t n) {
  constexpr size_t kLanes = 8;
  float acc[kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t d = 0;
  for (; d + kLanes <= n; d += kLanes)
    for (size_t j = 0; j < kLanes; ++j) {
      const float sq = x[d + j] * x[d + j];
      acc[j] = acc[j] + sq;
    }
  float sum = acc[0];
  for (size_t j = 1; j < kLanes; ++j) sum = sum + acc[j];
  for (; d < n; ++d) {
    const float sq = x[d] * x[d];
    sum = sum + sq;
  }
  return std::sqrt(sum);
}

double GlobalGradNorm(const TrainSlab& slab) {
  std::vector<float> norms;
  for (const size_t k : slab.norm_order()) {
    const SlabTensor& t = slab.tensors()[k];
    norms.push_back(TorchVectorNorm(slab.grads.data() + t.offset, t.numel));
  }
  return TorchVectorNorm(norms.data(), norms.size());
}

double ClipGradients(TrainSlab& slab, double norm, double max_norm, size_t begin, size_t end) {
  // f32 tensor arithmetic, as clip_grad_norm_ does it.
  const float coef = static_cast<float>(max_norm) / (static_cast<float>(norm) + 1e-6f);
  if (!(coef < 1.0f)) return 1.0;
  end = std::min(end, slab.grads.size());
  for (size_t i = begin; i < end; ++i) slab.grads[i] *= coef;
  return coef;
}

void AdamWUpdate(TrainSlab& slab, const AdamWParams& hp, double lr, int64_t step) {
  const size_t begin = slab.moments_begin, end = begin + slab.m.size();
  ELM_CHECK(step >= 1 && slab.v.size() == slab.m.size() && end <= slab.size() &&
            slab.grads.size() == slab.size());
  const AdamWStep s(hp, lr, step);
  // One parallel region for the whole update: tensors are independent, so no barrier between
  // them (nowait); small models would otherwise pay a fork/join per tensor.
  const auto total = static_cast<int64_t>(end - begin);
#pragma omp parallel if (total >= (1 << 16))
  for (const SlabTensor& t : slab.tensors()) {
    // Sharded moments hold whole tensors (train/sharding.h): a tensor is in or out.
    if (t.offset < begin || t.offset + t.numel > end) continue;
    float* p = slab.params.data() + t.offset;
    const float* g = slab.grads.data() + t.offset;
    float* m = slab.m.data() + (t.offset - begin);
    float* v = slab.v.data() + (t.offset - begin);
    const bool wd = t.decay && hp.weight_decay != 0.0;
    const auto n = static_cast<int64_t>(t.numel);
#pragma omp for schedule(static) nowait
    for (int64_t i = 0; i < n; ++i) s.Update(p[i], g[i], m[i], v[i], wd);
  }
}

AdamWStep::AdamWStep(const AdamWParams& hp, double lr, int64_t step)
    : b1(static_cast<float>(hp.beta1)),
      b2(static_cast<float>(hp.beta2)),
      omb1(static_cast<float>(1.0 - hp.beta1)),
      omb2(static_cast<float>(1.0 - hp.beta2)),
      step_size(static_cast<float>(lr / (1.0 - std::pow(hp.beta1, static_cast<double>(step))))),
      bc2_sqrt(static_cast<float>(std::sqrt(1.0 - std::pow(hp.beta2, static_cast<double>(step))))),
      eps(static_cast<float>(hp.eps)),
      decay(static_cast<float>(1.0 - lr * hp.weight_decay)) {}

double LrSchedule::At(int64_t it) const {
  double lr;
  if (warmup_iterations > 0 && it < warmup_iterations) {
    lr = warmup_init_lr + static_cast<double>(it) * (max_lr - warmup_init_lr) /
                              static_cast<double>(warmup_iterations);
  } else if (name == "fixed") {
    lr = max_lr;
  } else {
    const double t = static_cast<double>(it - warmup_iterations);
    const double period = static_cast<double>(max_iterations - warmup_iterations + 1);
    lr = min_lr + 0.5 * (max_lr - min_lr) * (1.0 + std::cos(std::numbers::pi * t / period));
  }
  return std::max(0.0, lr);
}

}  // namespace elm
