#include "kernels/matmul.h"

#include "kernels/blas.h"

#include <vector>

#include "base/error.h"
#include "base/quant.h"

namespace elm {

void MatRef::RowToF32(int64_t r, float* out) const {
  if (packed) {
    const int64_t nb = cols / kQBlock;
    if (dtype == DType::kQ8_0)
      DequantizePackedRowQ8_0(static_cast<const BlockQ8_0x16*>(data), r, nb, out);
    else
      DequantizePackedRowQ4_0(static_cast<const BlockQ4_0x16*>(data), r, nb, out);
    return;
  }
  ToF32(dtype, static_cast<const uint8_t*>(data) + static_cast<size_t>(r) * row_bytes(), out,
        static_cast<size_t>(cols));
}

MatRef MatRef::Rows(int64_t r0, int64_t n) const {
  ELM_CHECK(!packed || (r0 % kPackRows == 0 && n % kPackRows == 0));
  MatRef m = *this;
  m.data = static_cast<const uint8_t*>(data) + static_cast<size_t>(r0) * row_bytes();
  m.rows = n;
  return m;
}

bool Packable(const MatRef& m) {
  return m.data != nullptr && !m.packed && m.rows % kPackRows == 0 && m.cols % kQBlock == 0 &&
         (m.dtype == DType::kQ8_0 || m.dtype == DType::kQ4_0);
}

MatRef PackMatrix(const MatRef& src, uint8_t* dst) {
  ELM_CHECK(Packable(src));
  const int64_t nb = src.cols / kQBlock, groups = src.rows / kPackRows;
  const size_t group_bytes = static_cast<size_t>(kPackRows) * src.row_bytes();
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < groups; ++g) {
    const uint8_t* in = src.row(g * kPackRows);
    uint8_t* out = dst + static_cast<size_t>(g) * group_bytes;
    if (src.dtype == DType::kQ8_0)
      PackQ8_0x16(reinterpret_cast<const BlockQ8_0*>(in), reinterpret_cast<BlockQ8_0x16*>(out),
                  kPackRows, nb);
    else
      PackQ4_0x16(reinterpret_cast<const BlockQ4_0*>(in), reinterpret_cast<BlockQ4_0x16*>(out),
                  kPackRows, nb);
  }
  MatRef p = src;
  p.data = dst;
  p.packed = true;
  return p;
}

float Dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += a[i + k] * b[i + k];
  float tail = 0;
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

void MatMul(float* y, const float* x, int64_t T, const MatRef& w) {
  const int64_t N = w.rows, K = w.cols;
#pragma omp parallel
  {
    std::vector<float> row(w.dtype == DType::kF32 ? 0 : static_cast<size_t>(K));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const float* wr;
      if (w.dtype == DType::kF32) {
        wr = static_cast<const float*>(w.data) + n * K;
      } else {
        w.RowToF32(n, row.data());
        wr = row.data();
      }
      for (int64_t t = 0; t < T; ++t) y[t * N + n] = Dot(x + t * K, wr, K);
    }
  }
}

void MatMulForward(float* out, const float* inp, const float* w, int64_t N, int64_t C, int64_t OC) {
  if (N == 0 || OC == 0) return;
  Sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(N), static_cast<int>(OC),
        static_cast<int>(C), 1.0f, inp, static_cast<int>(C), w, static_cast<int>(C), 0.0f, out,
        static_cast<int>(OC));
}

void MatMulBackward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                    int64_t N, int64_t C, int64_t OC) {
  if (N == 0 || OC == 0 || C == 0) return;
  const int n = static_cast<int>(N), c = static_cast<int>(C), oc = static_cast<int>(OC);
  if (dinp != nullptr)  // [N, OC] · [OC, C]
    Sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, c, oc, 1.0f, dout, oc, w, c, 1.0f, dinp, c);
  if (dw != nullptr)  // [OC, N] · [N, C]
    Sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, oc, c, n, 1.0f, dout, oc, inp, c, 1.0f, dw, c);
}

}  // namespace elm
