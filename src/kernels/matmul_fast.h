// The fast matrix product used by inference: same contract as MatMul (y[T, N] = x[T, K] · Wᵀ)
// but with SIMD micro-kernels chosen at run time and reduced-precision operands where the weight
// type calls for it:
//   F32 weights   f32 × f32 FMA (no precision change)
//   F16 weights   f16 widened exactly, f32 FMA (decode and prefill)
//   BF16 weights  activations rounded to bf16, vdpbf16ps (f32 accumulation)
//   Q8_0 / Q4_0   packed: activations quantized to Q8_0, int8 dot products (VNNI); unpacked:
//                 the same when decoding (T < 4), bf16 panels and the bf16 GEMM in prefill
//   llama.cpp's other GGUF types (base/kquant.h)
//                 decode of Q4_K/Q5_K/Q6_K/IQ4_XS: activations quantized to Q8_K, integer dots
//                 (kquant_kernels.h); prefill (T >= 4) of Q4_K/Q5_K/Q6_K: the same integer sums
//                 on the table's prefill kernel where it has one (AVX-512 VNNI); decode of the
//                 others: weight rows dequantized to f32 exactly as ggml does, then the f32
//                 kernel; prefill of the others: 16-row panels dequantized once, rounded to
//                 bf16, and the bf16 GEMM
// With `exact`, BF16 and quantized weights (llama.cpp's types too) are widened to f32 panel by
// panel and go through the f32 kernels instead.
// Tolerances against MatMul are in docs/numerics.md.
#pragma once

#include <cstdint>

#include "kernels/cpu_kernels.h"
#include "kernels/matmul.h"

namespace elm {

// exact: every product in f32 on weights widened exactly (no bf16 rounding of the activations,
// no Q8_0 quantization of them), with the same SIMD kernels: --exact (docs/numerics.md).
void MatMulFast(float* y, const float* x, int64_t T, const MatRef& w, bool exact = false);
// Same, with an explicit kernel table (tests compare tables).
void MatMulWith(const CpuKernels& k, float* y, const float* x, int64_t T, const MatRef& w,
                bool exact = false);

}  // namespace elm
