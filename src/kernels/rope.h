// Rotary position embedding, rotate-half (GPT-NeoX) form, f32 (docs/openelm.md §1.3):
//   inv_freq[j] = 1 / base^(2j / Dh), θ = p · inv_freq[j], dims j and j + Dh/2 rotate together.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace elm {

class RopeTable {
 public:
  RopeTable(int head_dim, double base, int initial_positions);
  // Makes positions [0, n) available (the table grows on demand, like Apple's code).
  void Reserve(int n);
  const float* cos(int pos) const { return cos_.data() + static_cast<size_t>(pos) * head_dim_; }
  const float* sin(int pos) const { return sin_.data() + static_cast<size_t>(pos) * head_dim_; }
  int head_dim() const { return head_dim_; }
  int size() const { return n_; }

 private:
  int head_dim_;
  std::vector<float> inv_freq_;
  std::vector<float> cos_, sin_;  // [n, Dh]
  int n_ = 0;
};

// Rotates `n_heads` vectors of length Dh (contiguous, stride Dh) at position `pos` in place.
void ApplyRope(float* x, int n_heads, int pos, const RopeTable& table);

// Backward of ApplyRope, in place: on entry dx holds ∂L/∂(rotated vectors), on exit ∂L/∂(input
// vectors). The rotation is orthogonal, so this applies its transpose (rotation by −θ).
void RopeBackward(float* dx, int n_heads, int pos, const RopeTable& table);

}  // namespace elm
