// RMSNorm as OpenELM computes it: y = (x * rsqrt(mean(x²) + eps)) * w, in f32 (spec §1.2).
#pragma once

#include <cstdint>

namespace elm {

// Normalizes `rows` vectors of length n (stride n) from x into y (may alias).
void RmsNorm(float* y, const float* x, const float* w, int64_t rows, int64_t n, float eps);

}  // namespace elm
