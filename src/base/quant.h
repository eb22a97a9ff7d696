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

// ---- Row-interleaved ("packed") layouts for the SIMD kernels ----------------------------------
// Sixteen rows' block b side by side, so one 512-bit register holds four consecutive elements of
// each of the 16 rows and an integer dot-product instruction (4 bytes per 32-bit lane) advances
// all 16 rows at once; each lane then holds a whole block's dot product of one row, and the
// per-block scales are applied to 16 rows with one multiply. Same bytes per row as the GGUF
// layouts, built at load time (weights whose row count is a multiple of 16).
constexpr int kPackRows = 16;

// q[s][j][i]: row j, element 4s + i, stored as q + 128 (offset binary, 0..255) so it can be the
// unsigned operand of vpdpbusd; the kernels subtract 128·Σx once per block.
struct BlockQ8_0x16 {
  uint16_t d[kPackRows];  // f16 scales of the 16 rows
  uint8_t q[kQBlock / 4][kPackRows][4];
};
static_assert(sizeof(BlockQ8_0x16) == kPackRows * sizeof(BlockQ8_0));

// nib[s][j][i] is byte 4s + i of row j's BlockQ4_0::nib: low nibble element 4s + i, high nibble
// element 16 + 4s + i (values 0..15; the kernels subtract 8·Σx once per block).
struct BlockQ4_0x16 {
  uint16_t d[kPackRows];
  uint8_t nib[kQBlock / 8][kPackRows][4];
};
static_assert(sizeof(BlockQ4_0x16) == kPackRows * sizeof(BlockQ4_0));

// `rows` (a multiple of 16) rows of nb blocks each, GGUF layout → packed: out[g * nb + b] holds
// block b of rows 16g .. 16g + 15.
void PackQ8_0x16(const BlockQ8_0* in, BlockQ8_0x16* out, int64_t rows, int64_t nb);
void PackQ4_0x16(const BlockQ4_0* in, BlockQ4_0x16* out, int64_t rows, int64_t nb);
// Row r of a packed matrix with nb blocks per row, dequantized to f32 (nb · 32 floats).
void DequantizePackedRowQ8_0(const BlockQ8_0x16* m, int64_t r, int64_t nb, float* y);
void DequantizePackedRowQ4_0(const BlockQ4_0x16* m, int64_t r, int64_t nb, float* y);

// Σ q over each of n Q8_0 blocks (the activations' correction term for the offset layouts).
void BlockSumsQ8_0(const BlockQ8_0* x, int32_t* sums, int64_t n);

}  // namespace elm
