// The BLAS elm's f32 training products and reference attention use: OpenBLAS's cblas_sgemm,
// loaded on first use (dlopen) rather than linked, so inference never maps OpenBLAS and its
// Fortran runtime (~2.5 MB resident), and no elm command re-executes itself to choose OpenBLAS's
// kernels.
#pragma once

#include <cblas.h>  // the CBLAS types and constants; no symbol from it is linked

namespace elm {

// cblas_sgemm, same arguments. The first call loads OpenBLAS (the OpenMP build CMake found, else
// the system's libopenblas.so.0); throws elm::Error naming the library if it cannot.
void Sgemm(CBLAS_ORDER order, CBLAS_TRANSPOSE trans_a, CBLAS_TRANSPOSE trans_b, int M, int N, int K,
           float alpha, const float* A, int lda, const float* B, int ldb, float beta, float* C,
           int ldc);

// "OpenBLAS (<the library path>, loaded on first use)" for `elm --version`; loads nothing.
const char* BlasDescription();

// The OPENBLAS_CORETYPE elm reloads OpenBLAS with, given the kernels it picked itself
// (openblas_get_corename), or nullptr to keep its choice (always nullptr when the user set
// OPENBLAS_CORETYPE). Where OpenBLAS 0.3.21 (Debian 12) does not recognise an AVX-512 CPU it falls
// back to its AVX2 kernels ("Haswell", "Zen"); its "SkylakeX" kernels need only AVX-512
// F/BW/DQ/VL and made f32 training ~1.4x faster on a Zen 5 (docs/performance.md).
const char* OpenBlasCoreTypeOverride(const char* picked);

}  // namespace elm
