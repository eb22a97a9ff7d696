#include "kernels/activation.h"

#include <algorithm>
#include <cmath>

#include "base/simd_clones.h"
#include "kernels/fast_exp.h"

namespace elm {

float Silu(float z) {
  return z / (1.0f + std::exp(-z));
}

void SwiGlu(float* out, const float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = Silu(gate[i]) * up[i];
}

void SiluInPlace(float* u, int64_t n) {
  for (int64_t i = 0; i < n; ++i) u[i] = Silu(u[i]);
}

namespace {

// z·σ(z) with σ built from e^(−|z|) (ExpNonPositive): branch-free, so the loops vectorize.
inline float FastSilu(float z) {
  const float e = ExpNonPositive(-std::fabs(z));
  const float r = 1.0f / (1.0f + e);
  return z * (z >= 0 ? r : e * r);
}

ELM_CLONES void SwiGluSpan(float* out, const float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = FastSilu(gate[i]) * up[i];
}

ELM_CLONES void SiluSpan(float* u, int64_t n) {
  for (int64_t i = 0; i < n; ++i) u[i] = FastSilu(u[i]);
}

constexpr int64_t kSpan = 8192;  // elements per work item

}  // namespace

void SwiGluFast(float* out, const float* gate, const float* up, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= 2 * kSpan)
  for (int64_t i = 0; i < n; i += kSpan)
    SwiGluSpan(out + i, gate + i, up + i, std::min(kSpan, n - i));
}

void SiluInPlaceFast(float* u, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= 2 * kSpan)
  for (int64_t i = 0; i < n; i += kSpan) SiluSpan(u + i, std::min(kSpan, n - i));
}

namespace {
// d/dz [z·σ(z)] = σ(z)·(1 + z·(1 − σ(z)))
inline float SiluGrad(float z) {
  const float s = 1.0f / (1.0f + std::exp(-z));
  return s * (1.0f + z * (1.0f - s));
}
}  // namespace

void SwiGluBackward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                    int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    dgate[i] += dout[i] * up[i] * SiluGrad(gate[i]);
    dup[i] += dout[i] * Silu(gate[i]);
  }
}

void SiluBackward(float* du, const float* dout, const float* u, int64_t n) {
  for (int64_t i = 0; i < n; ++i) du[i] += dout[i] * SiluGrad(u[i]);
}

}  // namespace elm
