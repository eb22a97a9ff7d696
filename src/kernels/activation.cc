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

}  // namespace elm
