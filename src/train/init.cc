#include "train/init.h"

#include <cmath>
#include <numbers>

#include "base/rng.h"

namespace elm {

void InitParams(ParamSet& ps, uint64_t seed) {
  const ModelConfig& c = ps.config();
  const double d_std = 1.0 / std::sqrt(static_cast<double>(c.dim));
  const double out_std = d_std / std::sqrt(2.0 * c.n_layers);
  const auto& tensors = ps.tensors();
  const auto n = static_cast<int64_t>(tensors.size());
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t k = 0; k < n; ++k) {
    const ParamTensor& t = tensors[static_cast<size_t>(k)];
    float* p = ps.params.data() + t.offset;
    if (t.spec.shape.size() == 1) {
      for (size_t i = 0; i < t.numel; ++i) p[i] = 1.0f;
      continue;
    }
    const bool residual_out = t.spec.role == TensorRole::kOut || t.spec.role == TensorRole::kProj2;
    const double std = residual_out ? out_std : d_std;
    uint64_t mix = seed ^ (0xD1B54A32D192ED03ull * static_cast<uint64_t>(k + 1));
    Rng rng(SplitMix64(mix));
    for (size_t i = 0; i < t.numel; i += 2) {
      // Box–Muller: two independent deviates from two uniforms in (0, 1].
      const double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
      const double r = std::sqrt(-2.0 * std::log(u1));
      p[i] = static_cast<float>(std * r * std::cos(2.0 * std::numbers::pi * u2));
      if (i + 1 < t.numel)
        p[i + 1] = static_cast<float>(std * r * std::sin(2.0 * std::numbers::pi * u2));
    }
  }
}

}  // namespace elm
