// Matrix products against stored weights. Weights keep PyTorch's [out, in] layout and their
// stored dtype (f32/f16/bf16); rows are widened to f32 as they are read.
#pragma once

#include <cstdint>

#include "base/dtype.h"

namespace elm {

// A weight matrix [rows, cols] (row-major, PyTorch [out, in]) in its stored type.
struct MatRef {
  DType dtype = DType::kF32;
  const void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;

  // Row r widened to f32 into `out` (cols floats).
  void RowToF32(int64_t r, float* out) const;
  // Sub-matrix of rows [r0, r0 + n).
  MatRef Rows(int64_t r0, int64_t n) const;
};

// Dot product of two f32 vectors (8 partial sums: deterministic for a given n).
float Dot(const float* a, const float* b, int64_t n);

// y[T, rows] = x[T, cols] · Wᵀ. Reference kernel: rows in parallel (OpenMP), each row widened once
// and dotted with every x row.
void MatMul(float* y, const float* x, int64_t T, const MatRef& w);

}  // namespace elm
