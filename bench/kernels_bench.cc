// Microbenchmarks of the inference kernels on OpenELM-270M shapes: every weight type, decode
// (T = 1) and prefill (T = 128), reference and fast paths; llama.cpp's K-quant types as random
// blocks. Counters: FLOP/s and weight bytes/s.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "base/kquant.h"
#include "config/model_config.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/kquant_kernels.h"
#include "kernels/matmul.h"
#include "kernels/matmul_fast.h"
#include "kernels/rmsnorm.h"
#include "model/kv_cache.h"

namespace elm {
namespace {

struct Case {
  std::vector<float> x;
  std::vector<uint8_t> w;
  MatRef m;
};

Case Make(DType type, int64_t T, int64_t N, int64_t K) {
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0, 1);
  Case c;
  c.x.resize(static_cast<size_t>(T * K));
  for (auto& v : c.x) v = d(rng);
  std::vector<float> wf(static_cast<size_t>(N * K));
  for (auto& v : wf) v = d(rng) * 0.02f;
  c.w.resize(DTypeBytes(type, wf.size()));
  if (DTypeWritable(type))
    FromF32(type, wf.data(), c.w.data(), wf.size());
  else  // llama.cpp's types: random blocks (speed does not depend on values)
    RandomBlocks(type, 1, c.w.data(), wf.size() / DTypeBlock(type));
  c.m = MatRef{type, c.w.data(), N, K};
  if (Packable(c.m)) {  // as Model::Load lays out Q8_0/Q4_0 for the kernels
    std::vector<uint8_t> packed(c.w.size());
    c.m = PackMatrix(c.m, packed.data());
    c.w.swap(packed);
    c.m.data = c.w.data();
  }
  return c;
}

// Args: dtype index, T, N, K, fast (1) or reference (0).
void BM_MatMul(benchmark::State& state) {
  const DType types[] = {DType::kF32,    DType::kF16,  DType::kBF16, DType::kQ8_0,
                         DType::kQ4_0,   DType::kQ4_K, DType::kQ5_K, DType::kQ6_K,
                         DType::kIQ4_XS, DType::kQ2_K, DType::kQ3_K, DType::kQ5_0};
  const DType type = types[state.range(0)];
  const int64_t T = state.range(1), N = state.range(2), K = state.range(3);
  const bool fast = state.range(4) != 0;
  Case c = Make(type, T, N, K);
  std::vector<float> y(static_cast<size_t>(T * N));
  for (auto _ : state) {
    if (fast)
      MatMulFast(y.data(), c.x.data(), T, c.m);
    else
      MatMul(y.data(), c.x.data(), T, c.m);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(std::string(DTypeName(type)) + (fast ? " fast" : " ref"));
  state.counters["FLOP/s"] =
      benchmark::Counter(2.0 * T * N * K, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["weightB/s"] = benchmark::Counter(static_cast<double>(c.w.size()),
                                                   benchmark::Counter::kIsIterationInvariantRate);
}

void MatMulArgs(benchmark::internal::Benchmark* b) {
  for (int t = 0; t < 5; ++t) {
    b->Args({t, 1, 5120, 1280, 1});    // decode: proj_1-like
    b->Args({t, 128, 1536, 1280, 1});  // prefill: qkv-like
  }
  for (int t : {2, 3}) {  // prefill FFN shapes (128-row chunks): up/gate and down
    b->Args({t, 128, 5120, 1280, 1});
    b->Args({t, 128, 1280, 5120, 1});
  }
  for (int t = 5; t < 12; ++t) b->Args({t, 1, 5120, 1280, 1});   // llama.cpp's types: decode
  for (int t = 5; t < 9; ++t) b->Args({t, 128, 1536, 1280, 1});  // and prefill
  b->Args({2, 1, 5120, 1280, 0});
  b->Args({2, 128, 1536, 1280, 0});
}
BENCHMARK(BM_MatMul)->Apply(MatMulArgs)->Unit(benchmark::kMicrosecond)->UseRealTime();

// One K-quant decode kernel table alone (kernels/kquant_kernels.h) on one activation row and N
// random rows of K = 1280: N = 256 stays in L2, N = 131072 (~90 MB) streams from DRAM.
// Args: dtype (0 Q4_K, 1 Q5_K, 2 Q6_K, 3 IQ4_XS), N, table (0 scalar, 1 AVX2, 2 AVX-512).
void BM_KquantKernel(benchmark::State& state) {
  const DType types[] = {DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kIQ4_XS};
  const DType type = types[state.range(0)];
  const int64_t N = state.range(1), K = 1280, nb = K / kQK;
  const KquantKernels* tables[] = {&ScalarKquantKernels(), Avx2KquantKernels(),
                                   Avx512KquantKernels()};
  const KquantKernels* k = tables[state.range(2)];
  if (!k) {
    state.SkipWithError("this CPU lacks the instruction set");
    return;
  }
  std::vector<uint8_t> w(DTypeBytes(type, static_cast<size_t>(N * K)));
  RandomBlocks(type, 1, w.data(), static_cast<size_t>(N * nb));
  std::vector<float> x(static_cast<size_t>(K)), y(static_cast<size_t>(N));
  for (int64_t i = 0; i < K; ++i)
    x[static_cast<size_t>(i)] = static_cast<float>(i % 17) * 0.1f - 0.8f;
  std::vector<BlockQ8K> xq(static_cast<size_t>(nb));
  QuantizeQ8K(x.data(), xq.data(), static_cast<size_t>(K));
  for (auto _ : state) {
    switch (type) {
      case DType::kQ4_K:
        k->gemm_q4_k(y.data(), N, xq.data(), 1, reinterpret_cast<const BlockQ4K*>(w.data()), N, K);
        break;
      case DType::kQ5_K:
        k->gemm_q5_k(y.data(), N, xq.data(), 1, reinterpret_cast<const BlockQ5K*>(w.data()), N, K);
        break;
      case DType::kQ6_K:
        k->gemm_q6_k(y.data(), N, xq.data(), 1, reinterpret_cast<const BlockQ6K*>(w.data()), N, K);
        break;
      default:
        k->gemm_iq4_xs(y.data(), N, xq.data(), 1, reinterpret_cast<const BlockIq4Xs*>(w.data()), N,
                       K);
        break;
    }
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(std::string(DTypeName(type)) + " " + k->name);
  state.counters["weightB/s"] = benchmark::Counter(static_cast<double>(w.size()),
                                                   benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_KquantKernel)
    ->ArgsProduct({{0, 1, 2, 3}, {256, 131072}, {1, 2}})
    ->Unit(benchmark::kMicrosecond);

void BM_Attention(benchmark::State& state) {
  const int past = static_cast<int>(state.range(0));
  const bool fast = state.range(1) != 0;
  const int kvh = static_cast<int>(state.range(2)), heads = 4 * kvh;  // OpenELM-270M: 3 to 5
  // Layers visited in turn: 1 keeps the cache in L2/L3; 16 (the 270M's depth) makes each call
  // read its layer from DRAM, as a decode step does.
  const int layers = static_cast<int>(state.range(3));
  ModelConfig c;
  c.n_layers = layers;
  c.dim = 1280;
  c.head_dim = 64;
  c.gqa_groups = 4;
  c.layers.assign(static_cast<size_t>(layers), LayerConfig{heads, kvh, 5120, 1, 4});
  KVCache cache(c, past + 1);
  std::vector<float> q(static_cast<size_t>(heads) * 64, 0.1f), out(q.size());
  int layer = 0;
  for (auto _ : state) {
    (fast ? CausalAttentionFast : CausalAttention)(out.data(), q.data(), 1, past, heads, kvh, 64,
                                                   cache.Layer(layer));
    layer = (layer + 1) % layers;
    benchmark::DoNotOptimize(out.data());
  }
  state.SetLabel(fast ? "fast" : "ref");
  state.counters["KVB/s"] = benchmark::Counter(2.0 * kvh * (past + 1) * 64 * 4,
                                               benchmark::Counter::kIsIterationInvariantRate);
}
// Args: past positions, fast (1) or reference (0), KV heads (4 query heads each), layers.
BENCHMARK(BM_Attention)
    ->Args({512, 0, 5, 1})
    ->Args({512, 1, 5, 1})
    ->Args({1536, 1, 5, 1})
    ->Args({1536, 1, 3, 1})
    ->Args({1536, 1, 4, 16})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// Args: T, fast (1: RmsNormRows) or reference (0).
void BM_RmsNorm(benchmark::State& state) {
  const int64_t T = state.range(0);
  std::vector<float> x(static_cast<size_t>(T * 1280), 0.5f), w(1280, 1.0f), y(x.size());
  for (auto _ : state) {
    (state.range(1) ? RmsNormRows : RmsNorm)(y.data(), x.data(), w.data(), T, 1280, 1e-6f);
    benchmark::DoNotOptimize(y.data());
  }
}
BENCHMARK(BM_RmsNorm)
    ->Args({1, 0})
    ->Args({128, 0})
    ->Args({128, 1})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// The FFN activation over [128, 5120] (the widest OpenELM-270M layer): Args: fast (1) or not.
void BM_SwiGlu(benchmark::State& state) {
  const int64_t n = 128 * 5120;
  std::mt19937 rng(3);
  std::normal_distribution<float> d(0, 2);
  std::vector<float> gate(static_cast<size_t>(n)), up(gate.size()), out(gate.size());
  for (auto& v : gate) v = d(rng);
  for (auto& v : up) v = d(rng);
  for (auto _ : state) {
    (state.range(0) ? SwiGluFast : SwiGlu)(out.data(), gate.data(), up.data(), n);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_SwiGlu)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
}  // namespace elm
