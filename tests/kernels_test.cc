// Every kernel table (scalar, and each SIMD tier this CPU has) against the scalar reference, on
// random shapes with ragged tails, for every weight type; plus quantization round trips.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstddef>
#include <cstring>
#include <random>
#include <string_view>
#include <vector>

#include "base/dtype.h"
#include "base/kquant.h"
#include "base/quant.h"
#include "config/model_config.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/kquant_kernels.h"
#include "kernels/matmul.h"
#include "kernels/matmul_fast.h"
#include "kernels/rmsnorm.h"
#include "model/kv_cache.h"

namespace elm {
namespace kernels_test {

std::vector<const CpuKernels*> Tables() {
  std::vector<const CpuKernels*> t = {&ScalarKernels()};
  if (Avx2Kernels()) t.push_back(Avx2Kernels());
  if (Avx512Kernels()) t.push_back(Avx512Kernels());
  if (NeonKernels()) t.push_back(NeonKernels());
  return t;
}

std::vector<float> Random(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Stores W (f32) in `type`; returns the bytes and a MatRef over them.
MatRef Store(DType type, const std::vector<float>& w, int64_t N, int64_t K,
             std::vector<uint8_t>& bytes) {
  bytes.assign(DTypeBytes(type, static_cast<size_t>(N * K)), 0);
  FromF32(type, w.data(), bytes.data(), static_cast<size_t>(N * K));
  return MatRef{type, bytes.data(), N, K};
}

// Error bound of each weight type's fast path against f32 math on the same stored weights, as a
// fraction of Σ_k |x_k·w_k| (the natural scale of a dot product's rounding error;
// docs/numerics.md): activations are rounded to bf16, or quantized to Q8_0 when decoding. F16
// weights keep their 11 bits and f32 activations, decoding and prefill alike.
float Tolerance(DType t, int64_t T) {
  switch (t) {
    case DType::kF32:
    case DType::kF16:
      return 1e-6f;
    case DType::kBF16:
      return 4e-3f;
    case DType::kQ8_0:
    case DType::kQ4_0:
      return T < 4 ? 1e-2f : 4e-3f;
    default:  // llama.cpp's types: Q8_K activations when decoding, else bf16 panels of the
              // dequantized rows against bf16 activations (kernels/matmul_fast.h)
      return T < 4 ? 1e-2f : 4e-3f;
  }
  return 0;
}

// max_i |got_i - ref_i| / Σ_k |x_k w_ik| over the output.
float ScaledError(const std::vector<float>& got, const std::vector<float>& ref,
                  const std::vector<float>& x, const MatRef& m, int64_t T) {
  const int64_t N = m.rows, K = m.cols;
  std::vector<float> row(static_cast<size_t>(K));
  float worst = 0;
  for (int64_t n = 0; n < N; ++n) {
    m.RowToF32(n, row.data());
    for (int64_t t = 0; t < T; ++t) {
      double scale = 1e-30;
      for (int64_t k = 0; k < K; ++k) scale += std::fabs(x[t * K + k] * row[k]);
      const size_t i = static_cast<size_t>(t * N + n);
      worst = std::max(worst, static_cast<float>(std::fabs(got[i] - ref[i]) / scale));
    }
  }
  return worst;
}

TEST(Kernels, EveryTableMatchesReferenceOnRaggedShapes) {
  std::mt19937 rng(7);
  const int64_t shapes[][3] = {{1, 1, 32},    {1, 7, 64},   {2, 5, 96},  {3, 9, 160},
                               {4, 4, 32},    {5, 13, 224}, {7, 17, 64}, {9, 33, 320},
                               {1, 70, 1280}, {67, 20, 96}, {130, 6, 64}};
  for (DType type : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0}) {
    for (const auto& s : shapes) {
      const int64_t T = s[0], N = s[1], K = s[2];
      const auto x = Random(static_cast<size_t>(T * K), rng);
      const auto w = Random(static_cast<size_t>(N * K), rng, 0.1f);
      std::vector<uint8_t> bytes;
      const MatRef m = Store(type, w, N, K, bytes);
      std::vector<float> ref(static_cast<size_t>(T * N)), scalar(ref.size()), got(ref.size());
      MatMul(ref.data(), x.data(), T, m);  // f32 math on the stored (rounded) weights
      MatMulWith(ScalarKernels(), scalar.data(), x.data(), T, m);
      EXPECT_LE(ScaledError(scalar, ref, x, m, T), Tolerance(type, T))
          << "scalar " << DTypeName(type) << " T=" << T << " N=" << N << " K=" << K;
      // SIMD tables compute the same thing as the scalar twin up to summation order (and, for
      // the quantized activations, a rare rounding tie).
      for (const CpuKernels* k : Tables()) {
        MatMulWith(*k, got.data(), x.data(), T, m);
        EXPECT_LE(ScaledError(got, scalar, x, m, T), DTypeBlock(type) > 1 ? 1e-3f : 1e-5f)
            << k->name << " " << DTypeName(type) << " T=" << T << " N=" << N << " K=" << K;
      }
    }
  }
}

// llama.cpp's block types (base/kquant.h), as random blocks with
// finite scales of a realistic size.
MatRef RandomBlocks(DType type, int64_t N, int64_t K, std::mt19937& rng,
                    std::vector<uint8_t>& bytes) {
  bytes.resize(DTypeBytes(type, static_cast<size_t>(N * K)));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : bytes) b = static_cast<uint8_t>(byte(rng));
  const size_t block = DTypeSize(type), n = bytes.size() / block;
  // The f16 scale fields (those FirstNonFiniteScale checks) get exponents 2^-14 .. 2^-7.
  auto tame = [&](size_t off) {
    for (size_t b = 0; b < n; ++b) {
      uint16_t h;
      std::memcpy(&h, bytes.data() + b * block + off, 2);
      h = static_cast<uint16_t>((h & 0x83ffu) | (static_cast<uint16_t>(1 + byte(rng) % 8) << 10));
      std::memcpy(bytes.data() + b * block + off, &h, 2);
    }
  };
  switch (type) {
    case DType::kQ2_K:
      tame(offsetof(BlockQ2K, d));
      tame(offsetof(BlockQ2K, dmin));
      break;
    case DType::kQ3_K:
      tame(offsetof(BlockQ3K, d));
      break;
    case DType::kQ6_K:
      tame(offsetof(BlockQ6K, d));
      break;
    case DType::kQ4_1:
    case DType::kQ5_1:
    case DType::kQ4_K:
    case DType::kQ5_K:
      tame(0);
      tame(2);
      break;
    default:
      tame(0);
      break;
  }
  return MatRef{type, bytes.data(), N, K};
}

constexpr int64_t kPrefillRowsK = 4;  // matmul_fast.cc's kPrefillRows

// Table k's decode (or prefill) kernel for Q4_K/Q5_K/Q6_K `bytes` on Q8_K activations xq into y;
// false where the table has no such kernel.
bool RunKquant(const KquantKernels& k, bool prefill, DType type, std::vector<float>& y,
               const std::vector<BlockQ8K>& xq, int64_t T, const std::vector<uint8_t>& bytes,
               int64_t N, int64_t K) {
  auto run = [&](auto gemm, auto* w) {
    if (!gemm) return false;
    gemm(y.data(), N, xq.data(), T, w, N, K);
    return true;
  };
  const uint8_t* w = bytes.data();
  switch (type) {
    case DType::kQ4_K:
      return run(prefill ? k.prefill_q4_k : k.gemm_q4_k, reinterpret_cast<const BlockQ4K*>(w));
    case DType::kQ5_K:
      return run(prefill ? k.prefill_q5_k : k.gemm_q5_k, reinterpret_cast<const BlockQ5K*>(w));
    case DType::kQ6_K:
      return run(prefill ? k.prefill_q6_k : k.gemm_q6_k, reinterpret_cast<const BlockQ6K*>(w));
    default:
      return false;
  }
}

std::vector<BlockQ8K> QuantizedQ8K(const std::vector<float>& x, int64_t T, int64_t K) {
  std::vector<BlockQ8K> xq(static_cast<size_t>(T * (K / kQK)));
  for (int64_t t = 0; t < T; ++t) QuantizeQ8K(x.data() + t * K, xq.data() + t * (K / kQK), K);
  return xq;
}

// Whether the best K-quant table multiplies prefill batches of `type` on an integer kernel.
bool HasPrefillKernel(DType type) {
  std::vector<float> y(1);
  return RunKquant(BestKquantKernels(), true, type, y, {}, 0, {}, 1, 0);
}

// The scalar K-quant kernel's product (Q8_K activations, integer sums).
std::vector<float> ScalarKquantTwin(DType type, const std::vector<uint8_t>& bytes,
                                    const std::vector<float>& x, int64_t T, int64_t N, int64_t K) {
  std::vector<float> y(static_cast<size_t>(T * N));
  RunKquant(ScalarKquantKernels(), false, type, y, QuantizedQ8K(x, T, K), T, bytes, N, K);
  return y;
}

constexpr DType kLlamaCppTypes[] = {DType::kQ4_1, DType::kQ5_0,  DType::kQ5_1, DType::kIQ4_NL,
                                    DType::kQ2_K, DType::kQ3_K,  DType::kQ4_K, DType::kQ5_K,
                                    DType::kQ6_K, DType::kIQ4_XS};

TEST(Kernels, LlamaCppTypesMatchReference) {
  std::mt19937 rng(11);
  const int64_t shapes[][3] = {{1, 1, 256}, {1, 7, 512},  {2, 5, 768},   {3, 9, 256},
                               {4, 4, 256}, {5, 13, 512}, {1, 70, 1280}, {67, 20, 256}};
  for (DType type : kLlamaCppTypes) {
    for (const auto& s : shapes) {
      const int64_t T = s[0], N = s[1], K = s[2];
      const auto x = Random(static_cast<size_t>(T * K), rng);
      std::vector<uint8_t> bytes;
      const MatRef m = RandomBlocks(type, N, K, rng, bytes);
      std::vector<float> ref(static_cast<size_t>(T * N)), scalar(ref.size()), got(ref.size());
      MatMul(ref.data(), x.data(), T, m);
      MatMulWith(ScalarKernels(), scalar.data(), x.data(), T, m);
      EXPECT_LE(ScaledError(scalar, ref, x, m, T), Tolerance(type, T))
          << "scalar " << DTypeName(type) << " T=" << T << " N=" << N << " K=" << K;
      // Q4_K/Q5_K prefill on an integer prefill kernel: Q8_K activations, as the scalar decode
      // kernel computes them (kernels/kquant_kernels.h); else bf16 panels, as the scalar table.
      const bool integer = T >= kPrefillRowsK && HasPrefillKernel(type);
      const std::vector<float> twin = integer ? ScalarKquantTwin(type, bytes, x, T, N, K) : scalar;
      for (const CpuKernels* k : Tables()) {
        MatMulWith(*k, got.data(), x.data(), T, m);
        const bool plain = std::string_view(k->name) == "scalar";
        EXPECT_LE(ScaledError(got, plain ? scalar : twin, x, m, T), 1e-5f)
            << k->name << " " << DTypeName(type) << " T=" << T << " N=" << N << " K=" << K;
      }
    }
  }
}

// --exact: every weight type, packed Q8_0/Q4_0 included, gives f32 math on the widened weights
// (no bf16 or Q8_0 rounding of the activations) with every table, decoding and prefill.
TEST(Kernels, ExactModeIsF32MathOnWidenedWeights) {
  std::mt19937 rng(17);
  const int64_t shapes[][3] = {{1, 1, 32},    {1, 7, 64},   {2, 5, 96},   {3, 16, 160},
                               {4, 4, 32},    {5, 13, 224}, {7, 32, 64},  {9, 33, 320},
                               {1, 70, 1280}, {67, 20, 96}, {130, 48, 64}};
  for (DType type : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0}) {
    for (const auto& s : shapes) {
      const int64_t T = s[0], N = s[1], K = s[2];
      const auto x = Random(static_cast<size_t>(T * K), rng);
      const auto w = Random(static_cast<size_t>(N * K), rng, 0.1f);
      std::vector<uint8_t> bytes, packed_bytes;
      const MatRef m = Store(type, w, N, K, bytes);
      std::vector<float> ref(static_cast<size_t>(T * N)), got(ref.size());
      MatMul(ref.data(), x.data(), T, m);
      std::vector<MatRef> layouts = {m};
      if (Packable(m)) {
        packed_bytes.resize(bytes.size());
        layouts.push_back(PackMatrix(m, packed_bytes.data()));
      }
      for (const MatRef& l : layouts)
        for (const CpuKernels* k : Tables()) {
          std::fill(got.begin(), got.end(), 0.0f);
          MatMulWith(*k, got.data(), x.data(), T, l, /*exact=*/true);
          EXPECT_LE(ScaledError(got, ref, x, m, T), 1e-6f)
              << k->name << " exact " << DTypeName(type) << (l.packed ? " packed" : "")
              << " T=" << T << " N=" << N << " K=" << K;
        }
    }
  }
}

// The K-quant decode kernels: each SIMD table computes exactly the scalar twin's integer sums
// (the f32 scaling sums in another order), and the twin equals f32 math on the dequantized
// weights and activations up to rounding.
TEST(Kernels, KquantDecodeKernelsMatchScalarTwin) {
  std::mt19937 rng(5);
  std::vector<const KquantKernels*> tables = {&ScalarKquantKernels()};
  if (Avx2KquantKernels()) tables.push_back(Avx2KquantKernels());
  if (Avx512KquantKernels()) tables.push_back(Avx512KquantKernels());
  if (NeonKquantKernels()) tables.push_back(NeonKquantKernels());
  for (DType type : {DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kIQ4_XS}) {
    const int64_t T = 3, N = 11, K = 768, nb = K / kQK;
    std::vector<uint8_t> bytes;
    const MatRef m = RandomBlocks(type, N, K, rng, bytes);
    const auto x = Random(static_cast<size_t>(T * K), rng);
    std::vector<BlockQ8K> xq(static_cast<size_t>(T * nb));
    for (int64_t t = 0; t < T; ++t) QuantizeQ8K(x.data() + t * K, xq.data() + t * nb, K);
    std::vector<float> xd(x.size());  // the quantized activations, back in f32
    for (size_t b = 0; b < xq.size(); ++b)
      for (int i = 0; i < kQK; ++i) xd[b * kQK + i] = xq[b].d * xq[b].qs[i];
    std::vector<float> ref(static_cast<size_t>(T * N));
    MatMul(ref.data(), xd.data(), T, m);
    std::vector<float> twin;
    for (const KquantKernels* k : tables) {
      std::vector<float> y(ref.size());
      auto run = [&](auto gemm, auto* w) { gemm(y.data(), N, xq.data(), T, w, N, K); };
      switch (type) {
        case DType::kQ4_K:
          run(k->gemm_q4_k, reinterpret_cast<const BlockQ4K*>(bytes.data()));
          break;
        case DType::kQ5_K:
          run(k->gemm_q5_k, reinterpret_cast<const BlockQ5K*>(bytes.data()));
          break;
        case DType::kQ6_K:
          run(k->gemm_q6_k, reinterpret_cast<const BlockQ6K*>(bytes.data()));
          break;
        default:
          run(k->gemm_iq4_xs, reinterpret_cast<const BlockIq4Xs*>(bytes.data()));
          break;
      }
      if (twin.empty()) {
        twin = y;
        EXPECT_LE(ScaledError(y, ref, xd, m, T), 1e-6f) << DTypeName(type);
      } else {
        EXPECT_LE(ScaledError(y, twin, xd, m, T), 1e-6f) << k->name << " " << DTypeName(type);
      }
    }
  }
}

// The K-quant prefill kernels (T >= 4, Q4_K and Q5_K where a table has them) compute the scalar
// twin's integer sums per super-block too: ragged row counts (a 16-row group cut short), odd
// activation-row counts (every tile height), one and several super-blocks.
TEST(Kernels, KquantPrefillKernelsMatchScalarTwin) {
  std::mt19937 rng(6);
  const int64_t shapes[][3] = {{4, 16, 256}, {9, 37, 768}, {19, 5, 512}, {8, 48, 1280}};
  int ran = 0;
  for (DType type : {DType::kQ4_K, DType::kQ5_K, DType::kQ6_K}) {
    for (const auto& s : shapes) {
      const int64_t T = s[0], N = s[1], K = s[2];
      std::vector<uint8_t> bytes;
      const MatRef m = RandomBlocks(type, N, K, rng, bytes);
      const auto x = Random(static_cast<size_t>(T * K), rng);
      const std::vector<BlockQ8K> xq = QuantizedQ8K(x, T, K);
      std::vector<float> xd(x.size());  // the quantized activations, back in f32
      for (size_t b = 0; b < xq.size(); ++b)
        for (int i = 0; i < kQK; ++i) xd[b * kQK + i] = xq[b].d * xq[b].qs[i];
      const std::vector<float> twin = ScalarKquantTwin(type, bytes, x, T, N, K);
      for (const KquantKernels* k :
           {Avx2KquantKernels(), Avx512KquantKernels(), NeonKquantKernels()}) {
        std::vector<float> y(twin.size(), -1.0f);
        if (!k || !RunKquant(*k, true, type, y, xq, T, bytes, N, K)) continue;
        EXPECT_LE(ScaledError(y, twin, xd, m, T), 1e-6f)
            << k->name << " " << DTypeName(type) << " T=" << T << " N=" << N << " K=" << K;
        ++ran;
      }
    }
  }
  if (ran == 0) GTEST_SKIP() << "no K-quant prefill kernel on this machine";
}

// Q8_K activations as ggml makes them: the largest magnitude maps to ∓127, the rest round to
// nearest (even), the 16-element sums match.
TEST(Kernels, QuantizeQ8KMatchesGgmlRule) {
  std::mt19937 rng(3);
  auto x = Random(512, rng);
  x[7] = 9.0f;     // block 0's largest magnitude, positive: q = -127, d < 0
  x[300] = -9.0f;  // block 1's, negative: q = -127, d > 0
  std::vector<BlockQ8K> q(2);
  QuantizeQ8K(x.data(), q.data(), x.size());
  EXPECT_EQ(q[0].qs[7], -127);
  EXPECT_EQ(q[1].qs[300 - 256], -127);
  EXPECT_FLOAT_EQ(q[0].d, -9.0f / 127.0f);
  EXPECT_FLOAT_EQ(q[1].d, 9.0f / 127.0f);
  for (int b = 0; b < 2; ++b)
    for (int j = 0; j < 16; ++j) {
      int s = 0;
      for (int i = 0; i < 16; ++i) s += q[b].qs[16 * j + i];
      EXPECT_EQ(q[b].bsums[j], s);
      for (int i = 0; i < 16; ++i) {
        const float v =
            x[static_cast<size_t>(256 * b + 16 * j + i)] * (-127.0f / (b ? -9.0f : 9.0f));
        EXPECT_EQ(q[b].qs[16 * j + i], static_cast<int>(std::nearbyint(v)));
      }
    }
}

// Every table's Q8_K quantizer gives QuantizeQ8K's bytes: random blocks, a block of zeros, a
// block whose largest magnitude appears with both signs (the first one counts), values that
// round exactly halfway, and tiny and huge magnitudes.
TEST(Kernels, KquantQ8KQuantizerMatchesScalarInEveryTable) {
  std::mt19937 rng(8);
  std::vector<const KquantKernels*> tables = {&ScalarKquantKernels()};
  if (Avx2KquantKernels()) tables.push_back(Avx2KquantKernels());
  if (Avx512KquantKernels()) tables.push_back(Avx512KquantKernels());
  if (NeonKquantKernels()) tables.push_back(NeonKquantKernels());
  const size_t blocks = 12;
  auto x = Random(blocks * kQK, rng);
  for (size_t i = 0; i < kQK; ++i) x[kQK + i] = 0.0f;
  x[2 * kQK + 40] = -30.0f;  // ties: −30 first, then +30
  x[2 * kQK + 200] = 30.0f;
  for (size_t i = 0; i < kQK; ++i) x[3 * kQK + i] *= 1e30f;  // huge magnitudes
  for (size_t i = 0; i < kQK; ++i)  // iscale = 1: every value k + 0.5 rounds to even
    x[4 * kQK + i] = i == 0 ? -127.0f : static_cast<float>(static_cast<int>(i % 200) - 100) + 0.5f;
  for (size_t i = 0; i < kQK; ++i) x[5 * kQK + i] *= 1e-30f;  // tiny magnitudes
  std::vector<BlockQ8K> want(blocks);
  QuantizeQ8K(x.data(), want.data(), x.size());
  for (const KquantKernels* k : tables) {
    std::vector<BlockQ8K> got(blocks);
    k->quantize_q8k(x.data(), got.data(), x.size());
    for (size_t b = 0; b < blocks; ++b) {
      EXPECT_EQ(std::memcmp(got[b].qs, want[b].qs, sizeof want[b].qs), 0) << k->name << " " << b;
      EXPECT_EQ(std::memcmp(got[b].bsums, want[b].bsums, sizeof want[b].bsums), 0)
          << k->name << " " << b;
      EXPECT_EQ(std::memcmp(&got[b].d, &want[b].d, sizeof(float)), 0) << k->name << " " << b;
    }
  }
}

// The row-interleaved Q8_0/Q4_0 layouts: same rows back out, and every table's packed product
// (the scalar packed twin where a table has no packed kernel) matches the GGUF-layout product.
TEST(Kernels, PackedQuantizedMatchesUnpacked) {
  std::mt19937 rng(11);
  const int64_t shapes[][3] = {{1, 16, 32},  {1, 48, 1280}, {2, 32, 96},  {3, 16, 224},
                               {4, 64, 160}, {5, 32, 64},   {67, 16, 64}, {130, 32, 96}};
  for (DType type : {DType::kQ8_0, DType::kQ4_0}) {
    for (const auto& s : shapes) {
      const int64_t T = s[0], N = s[1], K = s[2];
      const auto x = Random(static_cast<size_t>(T * K), rng);
      auto w = Random(static_cast<size_t>(N * K), rng, 0.1f);
      w[0] = -1.0f;  // a block whose extreme value quantizes to the most negative code
      std::vector<uint8_t> bytes, packed_bytes;
      const MatRef m = Store(type, w, N, K, bytes);
      ASSERT_TRUE(Packable(m));
      packed_bytes.resize(bytes.size());
      const MatRef p = PackMatrix(m, packed_bytes.data());
      std::vector<float> a(static_cast<size_t>(K)), b(a.size());
      for (int64_t r = 0; r < N; ++r) {
        m.RowToF32(r, a.data());
        p.RowToF32(r, b.data());
        ASSERT_EQ(a, b) << DTypeName(type) << " row " << r;
      }
      // Packed products always quantize the activations (as unpacked decoding does).
      std::vector<float> ref(static_cast<size_t>(T * N)), scalar(ref.size()), got(ref.size());
      MatMul(ref.data(), x.data(), T, m);
      MatMulWith(ScalarKernels(), scalar.data(), x.data(), T, p);
      EXPECT_LE(ScaledError(scalar, ref, x, m, T), Tolerance(type, 1))
          << "scalar packed " << DTypeName(type) << " T=" << T << " N=" << N << " K=" << K;
      for (const CpuKernels* k : Tables()) {
        MatMulWith(*k, got.data(), x.data(), T, p);
        EXPECT_LE(ScaledError(got, scalar, x, m, T), 1e-5f)
            << k->name << " packed " << DTypeName(type) << " T=" << T << " N=" << N << " K=" << K;
      }
    }
  }
}

// Packed Q8_0/Q4_0 tiles of every height (one row, 2-4 rows in two chains, 5-8 rows in one
// chain each) add the same integers, so a row's output has the same bits whatever batch it is
// in: batched decoding of N streams gives each stream what decoding it alone gives.
TEST(Kernels, PackedTilesGiveTheSameBitsForEveryBatchSize) {
  std::mt19937 rng(19);
  const int64_t N = 48, K = 320;
  for (DType type : {DType::kQ8_0, DType::kQ4_0}) {
    const auto w = Random(static_cast<size_t>(N * K), rng, 0.1f);
    std::vector<uint8_t> bytes, packed_bytes;
    const MatRef m = Store(type, w, N, K, bytes);
    packed_bytes.resize(bytes.size());
    const MatRef p = PackMatrix(m, packed_bytes.data());
    for (const CpuKernels* k : Tables()) {
      for (int64_t T : {2, 4, 5, 8, 13}) {
        const auto x = Random(static_cast<size_t>(T * K), rng);
        std::vector<float> batch(static_cast<size_t>(T * N)), one(static_cast<size_t>(N));
        MatMulWith(*k, batch.data(), x.data(), T, p);
        for (int64_t t = 0; t < T; ++t) {
          MatMulWith(*k, one.data(), x.data() + t * K, 1, p);
          for (int64_t n = 0; n < N; ++n)
            ASSERT_EQ(batch[static_cast<size_t>(t * N + n)], one[static_cast<size_t>(n)])
                << k->name << " " << DTypeName(type) << " T=" << T << " row " << t << " n " << n;
        }
      }
    }
  }
}

// Weights wherever a file puts them: safetensors data is only 8-byte aligned when mapped (and a
// 16-bit type may sit at any even address). Every table gives the same bits at every offset,
// decoding and prefill alike, and stays within tolerance of the reference.
TEST(Kernels, MisalignedWeightsGiveIdenticalResults) {
  std::mt19937 rng(13);
  for (const CpuKernels* k : Tables()) {
    for (DType type : {DType::kF32, DType::kF16, DType::kBF16}) {
      for (int64_t T : {1, 5}) {
        for (int64_t K : {33, 64, 200, 1280}) {
          const int64_t N = 7;
          const auto x = Random(static_cast<size_t>(T * K), rng);
          const auto w = Random(static_cast<size_t>(N * K), rng, 0.1f);
          std::vector<uint8_t> bytes;
          const MatRef m = Store(type, w, N, K, bytes);
          std::vector<float> ref(static_cast<size_t>(T * N)), first(ref.size()), got(ref.size());
          MatMul(ref.data(), x.data(), T, m);
          // A 64-byte-aligned buffer, then the same bytes at each even offset within a line.
          std::vector<uint8_t> buf(bytes.size() + 192);
          const size_t lead = (64 - reinterpret_cast<uintptr_t>(buf.data()) % 64) % 64;
          for (size_t off = 0; off < 64; off += DTypeSize(type) == 4 ? 4 : 2) {
            uint8_t* p = buf.data() + lead + off;
            std::copy(bytes.begin(), bytes.end(), p);
            MatMulWith(*k, got.data(), x.data(), T, MatRef{type, p, N, K});
            if (off == 0) {
              first = got;
              EXPECT_LE(ScaledError(got, ref, x, m, T), Tolerance(type, T))
                  << k->name << " " << DTypeName(type) << " T=" << T << " K=" << K;
            } else {
              ASSERT_EQ(got, first) << k->name << " " << DTypeName(type) << " T=" << T << " K=" << K
                                    << " offset " << off;
            }
          }
        }
      }
    }
  }
}

// The fast path's activations against the reference ones (libm's expf), over the whole range,
// in parallel and not; RMSNorm's parallel rows are the reference bit for bit.
TEST(Kernels, FastActivationsAndNormMatchReference) {
  std::mt19937 rng(17);
  for (int64_t n : {1, 37, 20000}) {
    auto gate = Random(static_cast<size_t>(n), rng, 8.0f);
    const auto up = Random(static_cast<size_t>(n), rng);
    if (n > 10) {
      gate[0] = 0.0f, gate[1] = -0.0f, gate[2] = 90.0f, gate[3] = -90.0f, gate[4] = 1e-30f;
      gate[5] = -1e-30f, gate[6] = 200.0f, gate[7] = -200.0f;
    }
    std::vector<float> ref(static_cast<size_t>(n)), got(ref.size());
    SwiGlu(ref.data(), gate.data(), up.data(), n);
    SwiGluFast(got.data(), gate.data(), up.data(), n);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_NEAR(got[i], ref[i], 1e-6f * std::fabs(ref[i]) + 1e-30f)
          << "swiglu gate " << gate[i] << " up " << up[i];
    ref = gate, got = gate;
    SiluInPlace(ref.data(), n);
    SiluInPlaceFast(got.data(), n);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_NEAR(got[i], ref[i], 1e-6f * std::fabs(ref[i]) + 1e-30f) << "silu " << gate[i];
  }
  const int64_t rows = 37, dim = 96;
  const auto x = Random(static_cast<size_t>(rows * dim), rng), w = Random(96, rng);
  std::vector<float> ref(x.size()), got(x.size());
  RmsNorm(ref.data(), x.data(), w.data(), rows, dim, 1e-6f);
  RmsNormRows(got.data(), x.data(), w.data(), rows, dim, 1e-6f);
  EXPECT_EQ(got, ref);
}

// Odd K (not a multiple of the SIMD width) for the plain types.
TEST(Kernels, PlainTypesHandleAnyK) {
  std::mt19937 rng(9);
  for (const CpuKernels* k : Tables()) {
    for (DType type : {DType::kF32, DType::kF16, DType::kBF16}) {
      for (int64_t K : {1, 3, 15, 17, 31, 33, 47, 100}) {
        const int64_t T = 5, N = 6;
        const auto x = Random(static_cast<size_t>(T * K), rng);
        const auto w = Random(static_cast<size_t>(N * K), rng);
        std::vector<uint8_t> bytes;
        const MatRef m = Store(type, w, N, K, bytes);
        std::vector<float> ref(static_cast<size_t>(T * N)), got(ref.size());
        MatMul(ref.data(), x.data(), T, m);
        MatMulWith(*k, got.data(), x.data(), T, m);
        EXPECT_LE(ScaledError(got, ref, x, m, T), Tolerance(type, T))
            << k->name << " " << DTypeName(type) << " K=" << K;
      }
    }
  }
}

TEST(Kernels, QuantizationRoundTrip) {
  std::mt19937 rng(3);
  const auto x = Random(32 * 64, rng);
  std::vector<BlockQ8_0> q8(64);
  std::vector<BlockQ4_0> q4(64);
  std::vector<float> y(x.size());
  QuantizeQ8_0(x.data(), q8.data(), x.size());
  DequantizeQ8_0(q8.data(), y.data(), x.size());
  for (size_t b = 0; b < 64; ++b) {
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[b * 32 + i]));
    for (int i = 0; i < 32; ++i)
      EXPECT_LE(std::fabs(y[b * 32 + i] - x[b * 32 + i]), amax / 127 * 0.51f + 1e-3f * amax);
  }
  QuantizeQ4_0(x.data(), q4.data(), x.size());
  DequantizeQ4_0(q4.data(), y.data(), x.size());
  for (size_t b = 0; b < 64; ++b) {
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[b * 32 + i]));
    for (int i = 0; i < 32; ++i)
      EXPECT_LE(std::fabs(y[b * 32 + i] - x[b * 32 + i]), amax / 8 * 1.01f);
  }
  // The SIMD activation quantizer agrees with the scalar one up to rare rounding ties.
  for (const CpuKernels* k : Tables()) {
    std::vector<BlockQ8_0> a(64), b(64);
    QuantizeQ8_0(x.data(), a.data(), x.size());
    k->quantize_q8_0(x.data(), b.data(), static_cast<int64_t>(x.size()));
    int diff = 0;
    for (size_t i = 0; i < 64; ++i) {
      EXPECT_EQ(a[i].d, b[i].d) << k->name;
      for (int j = 0; j < 32; ++j) diff += std::abs(a[i].q[j] - b[i].q[j]);
    }
    EXPECT_LE(diff, 2) << k->name;
  }
}

TEST(Kernels, Bf16ConversionMatchesScalar) {
  std::mt19937 rng(5);
  const auto x = Random(1000, rng, 100.0f);
  for (const CpuKernels* k : Tables()) {
    std::vector<uint16_t> got(x.size());
    k->f32_to_bf16(x.data(), got.data(), static_cast<int64_t>(x.size()));
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(got[i], F32ToBF16(x[i])) << k->name << " " << i;
    std::vector<uint16_t> h(x.size() - 3);  // a ragged length
    for (size_t i = 0; i < h.size(); ++i) h[i] = F32ToF16(x[i] * 0.01f);
    got.assign(h.size(), 0);
    k->f16_to_bf16(h.data(), got.data(), static_cast<int64_t>(h.size()));
    for (size_t i = 0; i < h.size(); ++i)
      ASSERT_EQ(got[i], F32ToBF16(F16ToF32(h[i]))) << k->name << " f16 " << i;
    std::vector<float> wide(h.size());
    k->f16_to_f32(h.data(), wide.data(), static_cast<int64_t>(h.size()));
    for (size_t i = 0; i < h.size(); ++i)
      ASSERT_EQ(wide[i], F16ToF32(h[i])) << k->name << " f16 to f32 " << i;
  }
}

// A one-layer config with this attention shape (the KV cache's view of it is all the tests use).
ModelConfig OneAttentionLayer(int heads, int kv_heads, int head_dim) {
  ModelConfig c;
  c.n_layers = 1;
  c.dim = 64;
  c.head_dim = head_dim;
  c.gqa_groups = heads / kv_heads;
  c.layers = {LayerConfig{heads, kv_heads, 64, 1, 1}};
  return c;
}
TEST(Kernels, FastAttentionMatchesReference) {
  std::mt19937 rng(11);
  // Shapes: the generic loops (head_dim 16; 2 query heads per KV head) and the specialized
  // 4-heads-per-KV-head kernels for head_dim 64 and 128 (OpenELM's).
  struct Shape {
    int heads, kv_heads, hd;
  };
  for (const Shape sh : {Shape{8, 2, 16}, Shape{4, 2, 64}, Shape{8, 2, 64}, Shape{4, 1, 128}}) {
    const ModelConfig c = OneAttentionLayer(sh.heads, sh.kv_heads, sh.hd);
    const int H = sh.heads, Hkv = sh.kv_heads, hd = sh.hd;
    const std::string shape = "heads " + std::to_string(H) + "/" + std::to_string(Hkv) +
                              " head_dim " + std::to_string(hd);
    // Past lengths cross the fast kernel's 128-position blocks and, decoding (T = 1), its
    // 256-position stretches (merged flash-decoding style); bf16/f16 caches are compared with the
    // reference reading the same rounded values, and with an f32 cache (rounding only).
    for (DType kv_type : {DType::kF32, DType::kBF16, DType::kF16}) {
      for (int past : {0, 1, 7, 40, 300, 600}) {
        for (int T : {1, 3, 9}) {
          KVCache cache(c, past + T, kv_type), exact(c, past + T);
          for (int h = 0; h < Hkv; ++h)
            for (int p = 0; p < past + T; ++p) {
              const auto kv = Random(static_cast<size_t>(2 * hd), rng);
              cache.Store(0, h, p, kv.data(), kv.data() + hd);
              exact.Store(0, h, p, kv.data(), kv.data() + hd);
            }
          const auto q = Random(static_cast<size_t>(T) * H * hd, rng);
          std::vector<float> ref(q.size()), got(q.size()), f32(q.size());
          CausalAttention(ref.data(), q.data(), T, past, H, Hkv, hd, cache.Layer(0));
          CausalAttentionFast(got.data(), q.data(), T, past, H, Hkv, hd, cache.Layer(0));
          CausalAttention(f32.data(), q.data(), T, past, H, Hkv, hd, exact.Layer(0));
          // Work is split in fixed pieces: the thread count does not change a bit.
          std::vector<float> one(q.size());
          const int threads = omp_get_max_threads();
          omp_set_num_threads(1);
          CausalAttentionFast(one.data(), q.data(), T, past, H, Hkv, hd, cache.Layer(0));
          omp_set_num_threads(threads);
          ASSERT_EQ(one, got) << shape << " " << DTypeName(kv_type) << " past " << past << " T "
                              << T;
          const float rounding = kv_type == DType::kBF16  ? 0.05f
                                 : kv_type == DType::kF16 ? 5e-3f
                                                          : 0.0f;
          for (size_t i = 0; i < ref.size(); ++i) {
            ASSERT_NEAR(got[i], ref[i], 1e-5f) << shape << " " << DTypeName(kv_type) << " past "
                                               << past << " T " << T << " i " << i;
            ASSERT_NEAR(got[i], f32[i], rounding + 1e-5f)
                << shape << " " << DTypeName(kv_type) << " vs f32, past " << past << " T " << T
                << " i " << i;
          }
        }
      }
    }
  }
}

// The fast kernels score 4 keys at a time and the last n % 4 one at a time; both must sum a dot
// product in the same order (attention_fast.cc), so a key's score cannot depend on its position.
// Key n - 1 repeats key a, value a is the unit vector e0 and value n - 1 is e1 (other values 0):
// out[0] = p_a and out[1] = p_(n-1) for each head must be the same bits.
TEST(Kernels, FastAttentionScoreDoesNotDependOnKeyPlace) {
  std::mt19937 rng(23);
  struct Shape {
    int heads, kv_heads, hd;
  };
  for (const Shape sh : {Shape{4, 1, 64}, Shape{8, 2, 128}, Shape{8, 2, 16}}) {
    const ModelConfig c = OneAttentionLayer(sh.heads, sh.kv_heads, sh.hd);
    const int H = sh.heads, Hkv = sh.kv_heads, hd = sh.hd;
    // Lengths with every n % 4 and across the 128-position blocks (a new block starts a new group
    // of 4); T = 3 is prefill (its last row is checked), T = 1 a decode step.
    for (int n : {2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 129, 130, 131, 134}) {
      for (int a : {0, 1, 2, 3, 5, 126, 127, 128, 130}) {
        if (a >= n - 1) continue;
        for (int T : {1, 3}) {
          if (T > n) continue;
          KVCache cache(c, n);
          const std::vector<float> zero(static_cast<size_t>(hd), 0.0f);
          std::vector<float> e0 = zero, e1 = zero;
          e0[0] = 1;
          e1[1] = 1;
          for (int h = 0; h < Hkv; ++h) {
            std::vector<float> repeated;
            for (int p = 0; p < n; ++p) {
              auto k = Random(static_cast<size_t>(hd), rng);
              if (p == a) repeated = k;
              if (p == n - 1) k = repeated;
              cache.Store(0, h, p, k.data(),
                          p == a       ? e0.data()
                          : p == n - 1 ? e1.data()
                                       : zero.data());
            }
          }
          const auto q = Random(static_cast<size_t>(T) * H * hd, rng);
          std::vector<float> out(q.size());
          CausalAttentionFast(out.data(), q.data(), T, n - T, H, Hkv, hd, cache.Layer(0));
          for (int g = 0; g < H; ++g) {
            const float* o = out.data() + (static_cast<size_t>(T - 1) * H + g) * hd;
            ASSERT_GT(o[0], 0.0f);
            ASSERT_EQ(o[0], o[1]) << "heads " << H << "/" << Hkv << " head_dim " << hd << " n " << n
                                  << " a " << a << " T " << T << " head " << g;
          }
        }
      }
    }
  }
}

}  // namespace kernels_test
}  // namespace elm
