// Cost of one Sampler::Sample() call on a 32000-token vocabulary (OpenELM's), so it can be weighed
// against the forward pass it follows.
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "base/rng.h"
#include "sampling/sampler.h"

namespace elm {
namespace {

constexpr size_t kVocab = 32000;

// Roughly LM-shaped logits: Gaussian with standard deviation 2.5 (Box-Muller), fixed seed.
std::vector<float> MakeLogits() {
  Rng rng(1234);
  std::vector<float> l(kVocab);
  for (float& x : l) {
    const double u1 = 1.0 - rng.NextDouble();  // (0, 1]: log is finite
    const double u2 = rng.NextDouble();
    x = static_cast<float>(2.5 * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }
  return l;
}

std::vector<int> MakeHistory() {
  std::vector<int> h;
  for (int i = 0; i < 256; ++i) h.push_back((i * 7919) % static_cast<int>(kVocab));
  return h;
}

// With every penalty off Sample() leaves the logits untouched, so the same buffer is reused and
// the loop measures sampling alone.
void RunSample(benchmark::State& state, const SamplingParams& p) {
  std::vector<float> logits = MakeLogits();
  const std::vector<int> history = MakeHistory();
  Sampler sampler(p);
  for (auto _ : state) {
    benchmark::DoNotOptimize(sampler.Sample(logits, history));
  }
}

void BM_SampleDefault(benchmark::State& state) {
  RunSample(state, SamplingParams{});
}
BENCHMARK(BM_SampleDefault);

void BM_SampleGreedy(benchmark::State& state) {
  SamplingParams p;
  p.temperature = 0.0f;
  RunSample(state, p);
}
BENCHMARK(BM_SampleGreedy);

// top_k off: the nucleus (about 3700 tokens here) is found by TopP's histogram pre-filter and a
// sort of the survivors instead of top-k's selection.
void BM_SampleTopPOnly(benchmark::State& state) {
  SamplingParams p;
  p.top_k = 0;
  p.top_p = 0.9f;
  p.min_p = 0.0f;
  RunSample(state, p);
}
BENCHMARK(BM_SampleTopPOnly);

// Penalties modify the logits, so each iteration starts from a fresh copy (included in the time;
// copying 128 KB costs a few microseconds).
void BM_SampleDefaultWithPenalties(benchmark::State& state) {
  SamplingParams p;
  p.repetition_penalty = 1.1f;
  p.presence_penalty = 0.2f;
  p.frequency_penalty = 0.2f;
  const std::vector<float> logits = MakeLogits();
  const std::vector<int> history = MakeHistory();
  std::vector<float> scratch(logits.size());
  Sampler sampler(p);
  for (auto _ : state) {
    scratch = logits;
    benchmark::DoNotOptimize(sampler.Sample(scratch, history));
  }
}
BENCHMARK(BM_SampleDefaultWithPenalties);

}  // namespace
}  // namespace elm
