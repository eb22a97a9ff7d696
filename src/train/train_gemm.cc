#include "train/train_gemm.h"

#include <algorithm>

#include "base/error.h"
#include "kernels/cpu_kernels.h"
#include "kernels/matmul.h"
#include "train/qlora_base.h"

namespace elm {

namespace {

// The bf16 products use the inference GEMM kernel (CpuKernels::gemm_bf16: y[M, N] = a[M, K] ·
// b[N, K]ᵀ, both operands K-contiguous, f32 accumulation). Operands are rounded to bf16 as they
// are packed into column blocks of kKc, so a block of both operands stays in cache while a task
// runs; a task computes a kMc × kNc piece of the output over every block, in block order, so
// each output element is summed in the same order whatever the thread count. Tasks are handed
// out dynamically, so a thread the OS preempts does not hold up the others.
constexpr int64_t kKc = 1024;  // reduction (K) columns per block
constexpr int64_t kMc = 256;   // output rows per task
constexpr int64_t kNc = 48;    // output columns per task (a multiple of the kernel's 6-row tile)

// Column block kb of a packed operand (rows × K): rows × kc contiguous bf16 values.
struct Packed {
  const uint16_t* data;
  int64_t rows, K;
  int64_t kc(int64_t kb) const { return std::min(kKc, K - kb * kKc); }
  const uint16_t* block(int64_t kb, int64_t r) const { return data + rows * kb * kKc + r * kc(kb); }
};

// Packs the rows × K matrix whose element (r, c) is src[r · ld + c] (or src[c · ld + r] when
// `transposed`) into `dst` as Packed's column blocks of bf16.
Packed Pack(const CpuKernels& k, const float* src, int64_t rows, int64_t K, int64_t ld,
            bool transposed, std::vector<uint16_t>& dst) {
  dst.resize(static_cast<size_t>(rows * K));
  const Packed p{dst.data(), rows, K};
  uint16_t* out = dst.data();
  const int64_t nkb = (K + kKc - 1) / kKc;
  if (!transposed) {
#pragma omp parallel for schedule(dynamic, 16) if (rows * K >= (1 << 16))
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t kb = 0; kb < nkb; ++kb)
        k.f32_to_bf16(src + r * ld + kb * kKc, out + (p.block(kb, r) - p.data), p.kc(kb));
    return p;
  }
  // Transposed: 16 destination rows at a time, read as 16-float runs of each source row.
  constexpr int64_t kR = 16;
  const int64_t row_blocks = (rows + kR - 1) / kR;
#pragma omp parallel for schedule(dynamic, 16) if (rows * K >= (1 << 16))
  for (int64_t rb = 0; rb < row_blocks; ++rb) {
    const int64_t r0 = rb * kR, nr = std::min(kR, rows - r0);
    float tile[kR][256];
    for (int64_t c0 = 0; c0 < K; c0 += 256) {
      const int64_t nc = std::min<int64_t>(256, K - c0);
      for (int64_t c = 0; c < nc; ++c) {
        const float* s = src + (c0 + c) * ld + r0;
        for (int64_t r = 0; r < nr; ++r) tile[r][c] = s[r];
      }
      // A 256-column run never straddles a 1024-column block.
      const int64_t kb = c0 / kKc, off = c0 - kb * kKc;
      for (int64_t r = 0; r < nr; ++r)
        k.f32_to_bf16(tile[r], out + (p.block(kb, r0 + r) - p.data) + off, nc);
    }
  }
  return p;
}

// c[M, N] (row stride ldc) = or += a · bᵀ.
void Gemm(const CpuKernels& k, float* c, int64_t ldc, bool accumulate, const Packed& a,
          const Packed& b) {
  ELM_CHECK(a.K == b.K);
  const int64_t M = a.rows, N = b.rows, K = a.K;
  const int64_t nkb = (K + kKc - 1) / kKc;
  const int64_t mt = (M + kMc - 1) / kMc, nt = (N + kNc - 1) / kNc;
#pragma omp parallel
  {
    std::vector<float> tmp(static_cast<size_t>(kMc * kNc));
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < mt * nt; ++task) {
      const int64_t m0 = (task / nt) * kMc, n0 = (task % nt) * kNc;
      const int64_t mr = std::min(kMc, M - m0), nr = std::min(kNc, N - n0);
      for (int64_t kb = 0; kb < nkb; ++kb) {
        k.gemm_bf16(tmp.data(), nr, a.block(kb, m0), mr, b.block(kb, n0), nr, a.kc(kb));
        const bool add = accumulate || kb > 0;
        for (int64_t i = 0; i < mr; ++i) {
          float* ci = c + (m0 + i) * ldc + n0;
          const float* ti = tmp.data() + i * nr;
          if (add) {
            for (int64_t j = 0; j < nr; ++j) ci[j] += ti[j];
          } else {
            std::copy(ti, ti + nr, ci);
          }
        }
      }
    }
  }
}

}  // namespace

const float* TrainGemm::Weight(const float* w, int64_t rows, int64_t cols, const float* dw) {
  const QuantizedMatrix* q = FindQuantizedWeight(w);
  if (q == nullptr) return w;
  ELM_CHECK(q->rows == rows && q->cols == cols);
  if (dw != nullptr) Fail("train gemm: a quantized (QLoRA) base weight has no gradient");
  wq_.resize(static_cast<size_t>(rows * cols));
  DequantizeMatrix(*q, wq_.data());
  return wq_.data();
}

void TrainGemm::Forward(float* out, const float* inp, const float* w, int64_t N, int64_t C,
                        int64_t OC) {
  w = Weight(w, OC, C, nullptr);
  if (!bf16_ || N == 0 || OC == 0 || C == 0) {
    MatMulForward(out, inp, w, N, C, OC);
    return;
  }
  const CpuKernels& k = BestKernels();
  const Packed a = Pack(k, inp, N, C, C, false, a_);
  const Packed b = Pack(k, w, OC, C, C, false, b_);
  Gemm(k, out, OC, false, a, b);
}

void TrainGemm::Backward(float* dinp, float* dw, const float* dout, const float* inp,
                         const float* w, int64_t N, int64_t C, int64_t OC) {
  w = Weight(w, OC, C, dw);
  if (!bf16_ || N == 0 || OC == 0 || C == 0) {
    MatMulBackward(dinp, dw, dout, inp, w, N, C, OC);
    return;
  }
  const CpuKernels& k = BestKernels();
  if (dinp != nullptr) {  // dinp[N, C] += dout[N, OC] · W: reduce over OC
    const Packed a = Pack(k, dout, N, OC, OC, false, a_);
    const Packed b = Pack(k, w, C, OC, C, true, b_);
    Gemm(k, dinp, C, true, a, b);
  }
  if (dw != nullptr) {  // dw[OC, C] += doutᵀ · inp: reduce over the N positions
    const Packed a = Pack(k, dout, OC, N, OC, true, a_);
    const Packed b = Pack(k, inp, C, N, C, true, b_);
    Gemm(k, dw, C, true, a, b);
  }
}

}  // namespace elm
