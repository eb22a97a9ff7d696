// FFN activations (docs/openelm.md §1.1): SwiGLU uses the FIRST half of proj_1's output as the
// gate.
#pragma once

#include <cstdint>

namespace elm {

float Silu(float z);

// out[i] = silu(gate[i]) * up[i] for n elements (out may alias up or gate).
void SwiGlu(float* out, const float* gate, const float* up, int64_t n);
// Without GLU (ffn_with_glu = false): g = silu(u), u: [T, F].
void SiluInPlace(float* u, int64_t n);

// The fast path's versions: σ from the vectorized e^x of fast_exp.h (within 1e-6 relative of
// the above, or 1e-30 absolute where e^-87 replaces an underflow), in parallel over large n.
// Elementwise, so results do not depend on the thread count.
void SwiGluFast(float* out, const float* gate, const float* up, int64_t n);
void SiluInPlaceFast(float* u, int64_t n);

// Backward of SwiGlu, accumulating: dgate += dout·up·silu'(gate), dup += dout·silu(gate).
void SwiGluBackward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                    int64_t n);
// Backward of SiluInPlace (no GLU), accumulating: du += dout·silu'(u) for the pre-activation u.
void SiluBackward(float* du, const float* dout, const float* u, int64_t n);

}  // namespace elm
