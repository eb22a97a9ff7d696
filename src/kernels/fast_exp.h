// Softmax pieces shared by the cross-entropy and the attention: e^x written so that loops calling
// it vectorize, and the maximum of a row.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

namespace elm {

// e^x for x ≤ 0 (softmax arguments), branch-free so the loops below vectorize: x = n·ln2 + r with
// |r| ≤ ln2/2, e^r by its degree-6 Taylor polynomial (relative error < 2e-7, about 2 ulp; libm's
// expf is within 1 ulp), times 2^n built in the exponent bits. Below −87 it returns 0 instead of
// a denormal.
inline float ExpNonPositive(float x) {
  x = std::max(x, -87.0f);
  const float n = std::nearbyint(x * 1.44269504f);
  const float r = (x - n * 0.693145752f) - n * 1.42860677e-6f;  // ln2 split in two parts
  float p = 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const auto bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  return p * std::bit_cast<float>(bits);
}

// max_j row[j] over n ≥ 1 values: 16 partial maxima (vectorized, multiversioned).
float RowMax(const float* row, int64_t n);

}  // namespace elm
