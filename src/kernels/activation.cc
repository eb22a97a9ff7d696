#include "kernels/activation.h"

#include <cmath>

namespace elm {

float Silu(float z) { return z / (1.0f + std::exp(-z)); }

void SwiGlu(float* out, const float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = Silu(gate[i]) * up[i];
}

void SiluInPlace(float* u, int64_t n) {
  for (int64_t i = 0; i < n; ++i) u[i] = Silu(u[i]);
}

namespace {
// d/dz [z·σ(z)] = σ(z)·(1 + z·(1 − σ(z)))
inline float SiluGrad(float z) {
  const float s = 1.0f / (1.0f + std::exp(-z));
  return s * (1.0f + z * (1.0f - s));
}
}  // namespace

void SwiGluBackward(float* dgate, float* dup, const float* dout, const float* gate,
                    const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    dgate[i] += dout[i] * up[i] * SiluGrad(gate[i]);
    dup[i] += dout[i] * Silu(gate[i]);
  }
}

void SiluBackward(float* du, const float* dout, const float* u, int64_t n) {
  for (int64_t i = 0; i < n; ++i) du[i] += dout[i] * SiluGrad(u[i]);
}

}  // namespace elm
