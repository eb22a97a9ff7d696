// Matrix products against stored weights. Weights keep PyTorch's [out, in] layout and their
// stored dtype (f32/f16/bf16); rows are widened to f32 as they are read.
#pragma once

#include <cstdint>

#include "base/dtype.h"

namespace elm {

// A weight matrix [rows, cols] (row-major, PyTorch [out, in]) in its stored type. For the block
// types (Q8_0, Q4_0) each row is cols / 32 blocks.
struct MatRef {
  DType dtype = DType::kF32;
  const void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  // Q8_0/Q4_0 only: rows interleaved in groups of 16 (BlockQ8_0x16 / BlockQ4_0x16, quant.h),
  // as PackForKernels() lays them out; rows is then a multiple of 16 and row() is not valid.
  bool packed = false;

  size_t row_bytes() const { return DTypeBytes(dtype, static_cast<size_t>(cols)); }
  const uint8_t* row(int64_t r) const {
    return static_cast<const uint8_t*>(data) + static_cast<size_t>(r) * row_bytes();
  }
  // Row r widened to f32 into `out` (cols floats).
  void RowToF32(int64_t r, float* out) const;
  // Sub-matrix of rows [r0, r0 + n) (for a packed matrix, r0 and n are multiples of 16).
  MatRef Rows(int64_t r0, int64_t n) const;
};

// Whether `m` (Q8_0/Q4_0, GGUF layout) can be packed: rows a multiple of 16, whole blocks.
bool Packable(const MatRef& m);
// `src` packed into `dst` (src.row_bytes() · src.rows bytes); returns the packed MatRef over dst.
MatRef PackMatrix(const MatRef& src, uint8_t* dst);

// Dot product of two f32 vectors (8 partial sums: deterministic for a given n).
float Dot(const float* a, const float* b, int64_t n);

// y[T, rows] = x[T, cols] · Wᵀ. Reference kernel: rows in parallel (OpenMP), each row widened once
// and dotted with every x row.
void MatMul(float* y, const float* x, int64_t T, const MatRef& w);

// ---- Training matmuls: f32 row-major buffers through BLAS (cblas_sgemm). ----
// OpenBLAS partitions a GEMM over output blocks only, so for a fixed thread count the results are
// bit-for-bit reproducible (exact resume depends on it).

// out[N, OC] = inp[N, C] · Wᵀ, with W: [OC, C] in PyTorch's [out, in] layout.
void MatMulForward(float* out, const float* inp, const float* w, int64_t N, int64_t C, int64_t OC);
// Backward of MatMulForward, accumulating: dinp[N, C] += dout[N, OC] · W (skipped when dinp is
// null) and dw[OC, C] += doutᵀ · inp (skipped when dw is null).
void MatMulBackward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                    int64_t N, int64_t C, int64_t OC);

}  // namespace elm
