#include "kernels/rope.h"

#include <cmath>

#include "base/error.h"

namespace elm {

RopeTable::RopeTable(int head_dim, double base, int initial_positions) : head_dim_(head_dim) {
  ELM_CHECK(head_dim % 2 == 0);
  const int half = head_dim / 2;
  inv_freq_.resize(half);
  for (int j = 0; j < half; ++j) {
    // torch: 1.0 / (base ** (arange(0, Dh, 2).float() / Dh)), all in f32.
    const float e = static_cast<float>(2 * j) / static_cast<float>(head_dim);
    const float p = static_cast<float>(
        std::pow(static_cast<double>(static_cast<float>(base)), static_cast<double>(e)));
    inv_freq_[j] = 1.0f / p;
  }
  Reserve(initial_positions);
}

void RopeTable::Reserve(int n) {
  if (n <= n_) return;
  const int half = head_dim_ / 2;
  cos_.resize(static_cast<size_t>(n) * head_dim_);
  sin_.resize(static_cast<size_t>(n) * head_dim_);
  for (int p = n_; p < n; ++p) {
    for (int j = 0; j < half; ++j) {
      const float theta = static_cast<float>(p) * inv_freq_[j];
      const auto c = static_cast<float>(std::cos(static_cast<double>(theta)));
      const auto s = static_cast<float>(std::sin(static_cast<double>(theta)));
      const size_t base = static_cast<size_t>(p) * head_dim_;
      cos_[base + j] = cos_[base + j + half] = c;
      sin_[base + j] = sin_[base + j + half] = s;
    }
  }
  n_ = n;
}

void ApplyRope(float* x, int n_heads, int pos, const RopeTable& table) {
  const int hd = table.head_dim(), half = hd / 2;
  const float* c = table.cos(pos);
  const float* s = table.sin(pos);
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<size_t>(h) * hd;
    for (int j = 0; j < half; ++j) {
      const float a = v[j], b = v[j + half];
      // x * cos + rotate_half(x) * sin, rotate_half(x) = [-x2, x1]
      v[j] = a * c[j] - b * s[j];
      v[j + half] = b * c[j + half] + a * s[j + half];
    }
  }
}

void RopeBackward(float* dx, int n_heads, int pos, const RopeTable& table) {
  const int hd = table.head_dim(), half = hd / 2;
  const float* c = table.cos(pos);
  const float* s = table.sin(pos);
  for (int h = 0; h < n_heads; ++h) {
    float* g = dx + static_cast<size_t>(h) * hd;
    for (int j = 0; j < half; ++j) {
      const float ga = g[j], gb = g[j + half];
      // forward: a' = a·c − b·s, b' = b·c + a·s  ⇒  ∂a = ga·c + gb·s, ∂b = gb·c − ga·s
      g[j] = ga * c[j] + gb * s[j + half];
      g[j + half] = gb * c[j + half] - ga * s[j];
    }
  }
}

}  // namespace elm
