// Decode (matrix-vector) kernels for the K-quant GGUF types read from llama.cpp's files
// (base/kquant.h): the activations are quantized to Q8_K, as ggml does for these types, and each
// 256-element super-block's dot product is summed in integers, then scaled:
//   Q4_K, Q5_K  Σ_j sc_j·(q_j·x) · d·dx  −  Σ_j m_j·bsum_j · dmin·dx   (8 sub-blocks of 32)
//   Q6_K        Σ_j sc_j·(q_j·x − 32·bsum_j) · d·dx                    (16 sub-blocks of 16)
//   IQ4_XS      Σ_j (s_j − 32)·(v(q_j)·x) · d·dx                        (8 sub-blocks of 32)
// The activations' Q8_K quantization is in the table too (quantize_q8k: base/kquant.h's
// QuantizeQ8K, or a SIMD version with the same bytes), since decode pays it on one thread before
// every product.
// One table per instruction set, chosen like cpu_kernels.h's; every SIMD kernel computes the
// same integer sums per super-block as its scalar twin and differs only in the order of the f32
// sums (tests/kernels_test.cc compares them).
// Prefill (4 or more activation rows) of Q4_K, Q5_K and Q6_K has its own integer kernel where the
// table has one (AVX-512 VNNI): each 16-row group is unpacked once per call into bytes with the
// rows interleaved, so one vpdpbusd multiplies 16 rows by 4 activations broadcast, and the tile's
// integer sums per super-block are again the scalar twin's (the twin is its reference). The other
// types, and tables without it, dequantize 16-row weight panels once per batch into the bf16 GEMM
// (matmul_fast.cc; measured: docs/performance.md).
#pragma once

#include <cstdint>

#include "base/kquant.h"

namespace elm {

// y[t * ldy + r] = row r of w (nr rows of K / 256 blocks) · activation row t (x: [T, K / 256]).
template <typename B>
using KquantGemm = void (*)(float* y, int64_t ldy, const BlockQ8K* x, int64_t T, const B* w,
                            int64_t nr, int64_t K);

struct KquantKernels {
  const char* name;  // "avx512", "avx2", "neon", "scalar"
  KquantGemm<BlockQ4K> gemm_q4_k;
  KquantGemm<BlockQ5K> gemm_q5_k;
  KquantGemm<BlockQ6K> gemm_q6_k;
  KquantGemm<BlockIq4Xs> gemm_iq4_xs;
  // n floats (a multiple of 256) to n / 256 blocks, byte for byte as QuantizeQ8K.
  void (*quantize_q8k)(const float* x, BlockQ8K* out, size_t n);
  // The same products for T >= 4 activation rows (prefill); nullptr where the table has none
  // (then: bf16 panels).
  KquantGemm<BlockQ4K> prefill_q4_k;
  KquantGemm<BlockQ5K> prefill_q5_k;
  KquantGemm<BlockQ6K> prefill_q6_k;
};

const KquantKernels& ScalarKquantKernels();
const KquantKernels* Avx2KquantKernels();    // nullptr without AVX2
const KquantKernels* Avx512KquantKernels();  // nullptr without AVX-512 VNNI (and AVX2)
const KquantKernels* NeonKquantKernels();    // nullptr outside AArch64
// The best table here; ELM_ISA=scalar|avx2 selects that one (any other value the best).
const KquantKernels& BestKquantKernels();

}  // namespace elm
