// RMSNorm as OpenELM computes it: y = (x * rsqrt(mean(x²) + eps)) * w, in f32 (docs/openelm.md
// §1.2).
#pragma once

#include <cstdint>

namespace elm {

// Normalizes `rows` vectors of length n (stride n) from x into y (may alias).
void RmsNorm(float* y, const float* x, const float* w, int64_t rows, int64_t n, float eps);

// The same, rows in parallel (the fast path's prefill); bit-identical to RmsNorm.
void RmsNormRows(float* y, const float* x, const float* w, int64_t rows, int64_t n, float eps);

// Training backward of RmsNorm, accumulating (llm.c style): dx += ∂L/∂x, dw += ∂L/∂w for
// dy = ∂L/∂y. The per-row rsqrt is recomputed from x exactly as RmsNorm computes it, so nothing
// but the input has to be saved. dx must not alias dy or x.
void RmsNormBackward(float* dx, float* dw, const float* dy, const float* x, const float* w,
                     int64_t rows, int64_t n, float eps);

}  // namespace elm
