#include "kernels/fast_exp.h"

#include "base/simd_clones.h"

namespace elm {

ELM_CLONES float RowMax(const float* row, int64_t n) {
  float m[16];
  for (float& v : m) v = row[0];
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    for (int k = 0; k < 16; ++k) m[k] = std::max(m[k], row[j + k]);
  for (; j < n; ++j) m[0] = std::max(m[0], row[j]);
  float mx = m[0];
  for (float v : m) mx = std::max(mx, v);
  return mx;
}

}  // namespace elm
