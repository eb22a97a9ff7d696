// GGUF's 32-element block quantization formats, bit-compatible with llama.cpp so GGUF files map
// straight in:
//   Q8_0: { f16 d; int8 q[32] }            x[i] = d * q[i]
//   Q4_0: { f16 d; uint8 nib[16] }         x[j] = d * ((nib[j] & 15) - 8),
//                                          x[j + 16] = d * ((nib[j] >> 4) - 8),  j < 16
// These are the scalar references; SIMD kernels consume the same layouts.
#pragma once

#include <cstddef>
#include <cstdint>

namespace elm {

constexpr int kQBlock = 32;

struct BlockQ8_0 {
  uint16_t d;  // f16 scale
  int8_t q[kQBlock];
};
static_assert(sizeof(BlockQ8_0) == 34);

struct BlockQ4_0 {
  uint16_t d;  // f16 scale
  uint8_t nib[kQBlock / 2];
};
static_assert(sizeof(BlockQ4_0) == 18);

// n must be a multiple of 32.
void QuantizeQ8_0(const float* x, BlockQ8_0* out, size_t n);
void DequantizeQ8_0(const BlockQ8_0* in, float* y, size_t n);
void QuantizeQ4_0(const float* x, BlockQ4_0* out, size_t n);
void DequantizeQ4_0(const BlockQ4_0* in, float* y, size_t n);

}  // namespace elm
