// Cross-check of the NEON kernel table against the scalar twins, for running under qemu-aarch64
// on an x86 build machine (GoogleTest is not available for the cross target). See
// tests/cross/README.md. Exits non-zero on a mismatch.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "base/dtype.h"
#include "base/kquant.h"
#include "kernels/cpu_kernels.h"
#include "kernels/kquant_kernels.h"

using namespace elm;

int main() {
  const CpuKernels* neon = NeonKernels();
  if (!neon) {
    std::printf("not an AArch64 build\n");
    return 1;
  }
  const CpuKernels& ref = ScalarKernels();
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0, 1);
  int failures = 0;
  for (int64_t K : {32, 64, 96, 1280}) {
    const int64_t T = 3, N = 5;
    std::vector<float> x(T * K), w(N * K);
    for (auto& v : x) v = d(rng);
    for (auto& v : w) v = 0.1f * d(rng);
    std::vector<float> a(T * N), b(T * N);
    auto check = [&](const char* what) {
      for (size_t i = 0; i < a.size(); ++i)
        if (std::fabs(a[i] - b[i]) > 1e-3f * (1 + std::fabs(a[i]))) {
          std::printf("MISMATCH %s K=%lld i=%zu: %g vs %g\n", what, static_cast<long long>(K), i,
                      a[i], b[i]);
          ++failures;
          return;
        }
    };
    ref.gemm_f32(a.data(), N, x.data(), T, w.data(), N, K);
    neon->gemm_f32(b.data(), N, x.data(), T, w.data(), N, K);
    check("f32");
    std::vector<uint16_t> xb(T * K), wb(N * K), wh(N * K);
    FromF32(DType::kBF16, x.data(), xb.data(), xb.size());
    FromF32(DType::kBF16, w.data(), wb.data(), wb.size());
    FromF32(DType::kF16, w.data(), wh.data(), wh.size());
    ref.gemm_bf16(a.data(), N, xb.data(), T, wb.data(), N, K);
    neon->gemm_bf16(b.data(), N, xb.data(), T, wb.data(), N, K);
    check("bf16");
    ref.gemm_f16(a.data(), N, x.data(), T, wh.data(), N, K);
    neon->gemm_f16(b.data(), N, x.data(), T, wh.data(), N, K);
    check("f16");
    std::vector<BlockQ8_0> xq(T * K / 32), wq8(N * K / 32);
    std::vector<BlockQ4_0> wq4(N * K / 32);
    QuantizeQ8_0(x.data(), xq.data(), x.size());
    QuantizeQ8_0(w.data(), wq8.data(), w.size());
    QuantizeQ4_0(w.data(), wq4.data(), w.size());
    ref.gemm_q8_0(a.data(), N, xq.data(), T, wq8.data(), N, K);
    neon->gemm_q8_0(b.data(), N, xq.data(), T, wq8.data(), N, K);
    check("q8_0");
    ref.gemm_q4_0(a.data(), N, xq.data(), T, wq4.data(), N, K);
    neon->gemm_q4_0(b.data(), N, xq.data(), T, wq4.data(), N, K);
    check("q4_0");
  }
  // The K-quant decode kernels: the NEON table sums the same integers as the scalar one and scales
  // them in the same order, so the results are equal.
  const KquantKernels* kneon = NeonKquantKernels();
  const KquantKernels& kref = ScalarKquantKernels();
  if (!kneon || &BestKquantKernels() != kneon) {
    std::printf("MISMATCH: no NEON K-quant table\n");
    ++failures;
  }
  for (DType type : {DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kIQ4_XS}) {
    if (!kneon) break;
    const int64_t T = 3, N = 7, K = 768, nb = K / kQK;
    std::vector<uint8_t> w(DTypeBytes(type, static_cast<size_t>(N * K)));
    RandomBlocks(type, 11, w.data(), static_cast<size_t>(N * nb));
    std::vector<float> x(static_cast<size_t>(T * K));
    for (auto& v : x) v = d(rng);
    std::vector<BlockQ8K> xq(static_cast<size_t>(T * nb));
    for (int64_t t = 0; t < T; ++t)
      QuantizeQ8K(x.data() + t * K, xq.data() + t * nb, static_cast<size_t>(K));
    std::vector<float> a(static_cast<size_t>(T * N)), b(a.size());
    for (int which = 0; which < 2; ++which) {
      const KquantKernels& k = which ? *kneon : kref;
      float* y = which ? b.data() : a.data();
      switch (type) {
        case DType::kQ4_K:
          k.gemm_q4_k(y, N, xq.data(), T, reinterpret_cast<const BlockQ4K*>(w.data()), N, K);
          break;
        case DType::kQ5_K:
          k.gemm_q5_k(y, N, xq.data(), T, reinterpret_cast<const BlockQ5K*>(w.data()), N, K);
          break;
        case DType::kQ6_K:
          k.gemm_q6_k(y, N, xq.data(), T, reinterpret_cast<const BlockQ6K*>(w.data()), N, K);
          break;
        default:
          k.gemm_iq4_xs(y, N, xq.data(), T, reinterpret_cast<const BlockIq4Xs*>(w.data()), N, K);
          break;
      }
    }
    for (size_t i = 0; i < a.size(); ++i)
      if (a[i] != b[i]) {
        std::printf("MISMATCH %s i=%zu: %g vs %g\n", DTypeName(type), i, a[i], b[i]);
        ++failures;
        break;
      }
  }
  // The Q8_K quantizer: QuantizeQ8K's bytes (random blocks, zeros, a tie of ± the largest
  // magnitude, halfway values).
  if (kneon) {
    std::vector<float> x(5 * kQK);
    for (auto& v : x) v = d(rng);
    for (int i = 0; i < kQK; ++i) x[static_cast<size_t>(kQK + i)] = 0.0f;
    x[2 * kQK + 9] = -30.0f;
    x[2 * kQK + 99] = 30.0f;
    for (int i = 0; i < kQK; ++i)
      x[static_cast<size_t>(3 * kQK + i)] =
          i == 0 ? -127.0f : static_cast<float>(i % 200 - 100) + 0.5f;
    std::vector<BlockQ8K> want(5), got(5);
    kref.quantize_q8k(x.data(), want.data(), x.size());
    kneon->quantize_q8k(x.data(), got.data(), x.size());
    for (size_t b = 0; b < want.size(); ++b)
      if (std::memcmp(&want[b], &got[b], sizeof(BlockQ8K)) != 0) {
        std::printf("MISMATCH q8_k quantizer block %zu\n", b);
        ++failures;
      }
  }
  std::printf("neon kernels: %s\n", failures ? "FAILED" : "all match the scalar twins");
  return failures ? 1 : 0;
}
