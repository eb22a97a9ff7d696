// llama.cpp's other GGUF block formats, bit-compatible with ggml so GGUF files map straight in:
// the legacy 32-element Q4_1, Q5_0, Q5_1 and IQ4_NL blocks, and the 256-element "K-quant"
// super-blocks Q2_K … Q6_K and IQ4_XS (plus Q8_K, the activation format ggml pairs with them).
// docs/formats.md describes each layout. The dequantizers reproduce ggml's `dequantize_row_*`
// bit for bit: the same float operations in the same order (this file's .cc is compiled without
// FP contraction, so no multiply-add is fused).
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/dtype.h"

namespace elm {

constexpr int kQK = 256;  // elements per K-quant super-block

// x = d·q + m, q in 0..15 (low nibbles: elements 0..15, high nibbles: 16..31).
struct BlockQ4_1 {
  uint16_t d, m;  // f16
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ4_1) == 20);

// x = d·(q - 16), q = 4 low bits (as Q4_0) | bit 4 from qh (bit j: element j).
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ5_0) == 22);

// x = d·q + m, q as Q5_0's, unsigned.
struct BlockQ5_1 {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ5_1) == 24);

// x = d·kIq4nlValues[q], q a nibble laid out as Q4_0's.
struct BlockIq4Nl {
  uint16_t d;
  uint8_t qs[16];
};
static_assert(sizeof(BlockIq4Nl) == 18);

// The 16 non-linear IQ4 levels.
extern const int8_t kIq4nlValues[16];

// 16 sub-blocks of 16: x = d·(sc & 15)·q - dmin·(sc >> 4), q 2 bits.
struct BlockQ2K {
  uint8_t scales[kQK / 16];
  uint8_t qs[kQK / 4];
  uint16_t d, dmin;
};
static_assert(sizeof(BlockQ2K) == 84);

// 16 sub-blocks of 16: x = d·(s - 32)·(q - 4·!h), q 2 low bits, h the high bit, s 6-bit scales.
struct BlockQ3K {
  uint8_t hmask[kQK / 8];
  uint8_t qs[kQK / 4];
  uint8_t scales[12];
  uint16_t d;
};
static_assert(sizeof(BlockQ3K) == 110);

// 8 sub-blocks of 32: x = d·s·q - dmin·m, 6-bit s and m packed in 12 bytes, q 4 bits.
struct BlockQ4K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ4K) == 144);

// As Q4_K with a fifth bit per element in qh.
struct BlockQ5K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[kQK / 8];
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ5K) == 176);

// 16 sub-blocks of 16: x = d·s·(q - 32), s int8, q 6 bits (4 in ql, 2 in qh).
struct BlockQ6K {
  uint8_t ql[kQK / 2];
  uint8_t qh[kQK / 4];
  int8_t scales[kQK / 16];
  uint16_t d;
};
static_assert(sizeof(BlockQ6K) == 210);

// 8 sub-blocks of 32: x = d·(s - 32)·kIq4nlValues[q], 6-bit s (4 bits in scales_l, 2 in
// scales_h).
struct BlockIq4Xs {
  uint16_t d;
  uint16_t scales_h;
  uint8_t scales_l[kQK / 64];
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockIq4Xs) == 136);

// Activations: x ≈ d·q with an f32 scale, and the sums of each 16 q (bsums).
struct BlockQ8K {
  float d;
  int8_t qs[kQK];
  int16_t bsums[kQK / 16];
};
static_assert(sizeof(BlockQ8K) == 292);

// Scale and min j (0..7) of a Q4_K/Q5_K block's 12 packed scale bytes.
inline void ScaleMinK4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// The 16 signed 6-bit scales (s - 32) of a Q3_K block.
void UnpackQ3KScales(const uint8_t packed[12], int8_t out[16]);

// n elements (a multiple of the block size) from n / block blocks, exactly as ggml.
void DequantizeQ4_1(const BlockQ4_1* in, float* y, size_t n);
void DequantizeQ5_0(const BlockQ5_0* in, float* y, size_t n);
void DequantizeQ5_1(const BlockQ5_1* in, float* y, size_t n);
void DequantizeIq4Nl(const BlockIq4Nl* in, float* y, size_t n);
void DequantizeQ2K(const BlockQ2K* in, float* y, size_t n);
void DequantizeQ3K(const BlockQ3K* in, float* y, size_t n);
void DequantizeQ4K(const BlockQ4K* in, float* y, size_t n);
void DequantizeQ5K(const BlockQ5K* in, float* y, size_t n);
void DequantizeQ6K(const BlockQ6K* in, float* y, size_t n);
void DequantizeIq4Xs(const BlockIq4Xs* in, float* y, size_t n);

// The first of n_blocks blocks of block type `t` (any DType with blocks, Q8_0 and Q4_0 included)
// whose f16 scale or minimum is inf or NaN, or -1 when all are finite. `data` may be unaligned.
int64_t FirstNonFiniteScale(DType t, const void* data, size_t n_blocks);

// n_blocks random blocks of block type `t` (benchmarks, tests): random quants, and f16 scales
// and minimums of random sign with magnitudes between 2^-14 and 2^-7; reproducible from `seed`.
void RandomBlocks(DType t, uint64_t seed, uint8_t* dst, size_t n_blocks);

// ggml's quantize_row_q8_K (n a multiple of 256): per block the value of largest magnitude maps
// to -127 (scale -max/127), values rounded to nearest even, clamped to 127.
void QuantizeQ8K(const float* x, BlockQ8K* out, size_t n);

}  // namespace elm
