// Micro-kernels behind MatMulFast, one table per instruction set, chosen once at startup from
// what the CPU reports. Every kernel has the scalar twin in cpu_kernels_scalar.cc, and
// tests/kernels_test.cc checks each ISA's table against it on ragged shapes.
//
// Conventions: weights are rows of a PyTorch [out, in] matrix; `y` rows have stride ldy; every
// kernel overwrites y[t * ldy + r] for t < T, r < nr.
#pragma once

#include <cstdint>

#include "base/quant.h"

namespace elm {

struct CpuKernels {
  const char* name;  // "avx512", "avx2", "neon", "scalar"
  // x: [T, K] bf16, w: [nr, K] bf16.
  void (*gemm_bf16)(float* y, int64_t ldy, const uint16_t* x, int64_t T, const uint16_t* w,
                    int64_t nr, int64_t K);
  // x: [T, K] f32, w: [nr, K] f32.
  void (*gemm_f32)(float* y, int64_t ldy, const float* x, int64_t T, const float* w, int64_t nr,
                   int64_t K);
  // x: [T, K] f32, w: [nr, K] f16.
  void (*gemm_f16)(float* y, int64_t ldy, const float* x, int64_t T, const uint16_t* w, int64_t nr,
                   int64_t K);
  // x: [T, K/32] Q8_0 blocks (activations quantized), w: [nr, K/32] Q8_0 / Q4_0 blocks.
  void (*gemm_q8_0)(float* y, int64_t ldy, const BlockQ8_0* x, int64_t T, const BlockQ8_0* w,
                    int64_t nr, int64_t K);
  void (*gemm_q4_0)(float* y, int64_t ldy, const BlockQ8_0* x, int64_t T, const BlockQ4_0* w,
                    int64_t nr, int64_t K);
  // Packed weights (quant.h): w is nr / 16 groups of K / 32 blocks (nr a multiple of 16);
  // xsum[t * K/32 + b] = Σ of activation block b's quants (BlockSumsQ8_0). Null in tables
  // without packed kernels: models are then not packed for them (PackForKernels).
  void (*gemm_q8_0x16)(float* y, int64_t ldy, const BlockQ8_0* x, const int32_t* xsum, int64_t T,
                       const BlockQ8_0x16* w, int64_t nr, int64_t K);
  void (*gemm_q4_0x16)(float* y, int64_t ldy, const BlockQ8_0* x, const int32_t* xsum, int64_t T,
                       const BlockQ4_0x16* w, int64_t nr, int64_t K);
  // Conversions used to prepare operands: f32 → bf16 (round to nearest even), f32 → Q8_0.
  void (*f32_to_bf16)(const float* x, uint16_t* y, int64_t n);
  // f16 → bf16 (round to nearest even), for F16 weight panels in prefill.
  void (*f16_to_bf16)(const uint16_t* x, uint16_t* y, int64_t n);
  // f16 → f32 (exact), for f16 KV caches.
  void (*f16_to_f32)(const uint16_t* x, float* y, int64_t n);
  void (*quantize_q8_0)(const float* x, BlockQ8_0* y, int64_t n);
};

const CpuKernels& ScalarKernels();
// nullptr when the CPU (or the compiler) lacks the instructions.
const CpuKernels* Avx512Kernels();
const CpuKernels* Avx2Kernels();
const CpuKernels* NeonKernels();
// The best table for this CPU; ELM_ISA=scalar|avx2|avx512|neon overrides (tests, benchmarks).
const CpuKernels& BestKernels();

}  // namespace elm
