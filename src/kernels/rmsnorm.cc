#include "kernels/rmsnorm.h"

#include <cmath>

namespace elm {

void RmsNorm(float* y, const float* x, const float* w, int64_t rows, int64_t n, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    double ss = 0;  // double accumulation: the reference should not depend on summation order
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float mean = static_cast<float>(ss / static_cast<double>(n));
    const float inv = 1.0f / std::sqrt(mean + eps);
    for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] * inv) * w[i];
  }
}

void RmsNormRows(float* y, const float* x, const float* w, int64_t rows, int64_t n, float eps) {
#pragma omp parallel for schedule(static) if (rows >= 8)
  for (int64_t r = 0; r < rows; ++r) RmsNorm(y + r * n, x + r * n, w, 1, n, eps);
}

void RmsNormBackward(float* dx, float* dw, const float* dy, const float* x, const float* w,
                     int64_t rows, int64_t n, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    const float* dyr = dy + r * n;
    float* dxr = dx + r * n;
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float mean = static_cast<float>(ss / static_cast<double>(n));
    const float inv = 1.0f / std::sqrt(mean + eps);
    // y_i = x_i·r·w_i with r = (mean(x²) + eps)^-1/2, ∂r/∂x_j = -r³·x_j / n:
    //   ∂L/∂x_j = r·dy_j·w_j − (r³ / n)·x_j·Σ_i dy_i·w_i·x_i
    double dot = 0;
    for (int64_t i = 0; i < n; ++i) dot += static_cast<double>(dyr[i]) * w[i] * xr[i];
    const auto k = static_cast<float>(dot * inv * inv * inv / static_cast<double>(n));
    for (int64_t i = 0; i < n; ++i) {
      dxr[i] += inv * dyr[i] * w[i] - k * xr[i];
      dw[i] += dyr[i] * (xr[i] * inv);
    }
  }
}

}  // namespace elm
