#include "bench/speed_bench.h"

#include <omp.h>
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <random>
#include <utility>

#include "base/error.h"
#include "kernels/cpu_kernels.h"
#include "model/session.h"

namespace elm {

std::vector<int> RandomTokens(int n, int vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> d(0, vocab - 1);
  std::vector<int> t(static_cast<size_t>(n));
  for (auto& x : t) x = d(rng);
  return t;
}

namespace {

using Clock = std::chrono::steady_clock;

// Bytes of K and V read by one decode step at position p, `elem` bytes per value.
double KvBytesAt(const ModelConfig& c, int p, double elem) {
  double b = 0;
  for (const auto& l : c.layers) b += 2.0 * l.n_kv_heads * (p + 1) * c.head_dim * elem;
  return b;
}

}  // namespace

Stat SummarizeSamples(std::vector<double> v) {
  Stat s;
  if (!v.empty()) {
    for (double x : v) s.mean += x;
    s.mean /= static_cast<double>(v.size());
    for (double x : v) s.sd += (x - s.mean) * (x - s.mean);
    s.sd = v.size() > 1 ? std::sqrt(s.sd / static_cast<double>(v.size() - 1)) : 0;
  }
  s.samples = std::move(v);
  return s;
}

double MeasureReadBandwidth(size_t bytes) {
  // An integer sum (which the compiler vectorizes freely) over a buffer far larger than the
  // caches, read by every thread: the best of 5 passes.
  const size_t n = bytes / sizeof(uint64_t);
  std::vector<uint64_t> buf(n);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) buf[i] = i & 7;
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = Clock::now();
    uint64_t total = 0;
#pragma omp parallel for reduction(+ : total) schedule(static)
    for (size_t i = 0; i < n; ++i) total += buf[i];
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (total == 1) Fail("unreachable");  // keeps the sum alive
    best = std::max(best, static_cast<double>(bytes) / s / 1e9);
  }
  return best;
}

SpeedBenchResult RunSpeedBench(const std::shared_ptr<const Model>& model,
                               const SpeedBenchOptions& opt) {
  const ModelConfig& c = model->config();
  SpeedBenchResult r;
  r.model = model->path();
  r.weights = model->weights_dtype();
  r.isa = BestKernels().name;
  r.threads = omp_get_max_threads();
  r.weights_bytes = static_cast<double>(model->weights_bytes());
  int max_depth = 0;
  for (int d : opt.depths) max_depth = std::max(max_depth, d);
  const int ctx = std::max(opt.prompt_tokens, max_depth + opt.gen_tokens) + 1;
  Session s(model, ctx, opt.kv_type);
  const auto elem = static_cast<double>(DTypeSize(opt.kv_type));
  std::vector<float> logits;

  if (opt.prompt_tokens > 0) {
    const auto prompt = RandomTokens(opt.prompt_tokens, c.vocab_size, 1);
    std::vector<double> tps;
    for (int rep = 0; rep < opt.warmup + opt.repetitions; ++rep) {
      s.Reset();
      const auto t0 = Clock::now();
      s.Forward(prompt, logits);
      const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
      if (rep >= opt.warmup) tps.push_back(opt.prompt_tokens / sec);
    }
    r.pp_tokens_per_s = SummarizeSamples(tps);
    double flops = 0;  // matmuls (the LM head only for the last row) + attention
    for (int i = 0; i < c.n_layers; ++i) {
      flops += 2.0 * (c.LayerParams(i) - 2.0 * c.dim) * opt.prompt_tokens;
      flops += 2.0 * 2.0 * c.layers[i].n_heads * c.head_dim * opt.prompt_tokens *
               (opt.prompt_tokens + 1) / 2.0;
    }
    flops += 2.0 * c.vocab_size * c.dim;
    r.pp_gflops = flops / (opt.prompt_tokens / r.pp_tokens_per_s.mean) / 1e9;
  }
  if (opt.gen_tokens > 0) {
    for (int depth : opt.depths) {
      TgResult t;
      t.depth = depth;
      const auto context = RandomTokens(std::max(depth, 1), c.vocab_size, 2);
      std::vector<double> tps;
      for (int rep = 0; rep < opt.warmup + opt.repetitions; ++rep) {
        s.Reset();
        if (depth > 0) s.Forward(context, logits);
        int tok = 1;
        const auto t0 = Clock::now();
        for (int g = 0; g < opt.gen_tokens; ++g) {
          s.Forward(std::span<const int>(&tok, 1), logits);
          tok = (tok * 7919 + g) % c.vocab_size;
        }
        const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
        if (rep >= opt.warmup) tps.push_back(opt.gen_tokens / sec);
      }
      t.tokens_per_s = SummarizeSamples(tps);
      double kv = 0;
      for (int g = 0; g < opt.gen_tokens; ++g) kv += KvBytesAt(c, depth + g, elem);
      // Every weight matrix is read once per token, except the embedding table's lookup row
      // (the tied LM head reads it whole).
      double weights = r.weights_bytes;
      if (!c.tied_embeddings)
        weights -= static_cast<double>(model->embeddings().row_bytes()) *
                   static_cast<double>(model->embeddings().rows - 1);
      t.bytes_per_token = weights + kv / opt.gen_tokens;
      t.gbs = t.bytes_per_token * t.tokens_per_s.mean / 1e9;
      r.tg.push_back(t);
    }
  }
  // Peak resident memory before the bandwidth test allocates its buffer.
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  r.peak_rss_bytes = ru.ru_maxrss * 1024L;
  r.kv_cache_bytes = static_cast<double>(s.cache().bytes());
  r.bandwidth_gbs = opt.bandwidth_gbs > 0 ? opt.bandwidth_gbs : MeasureReadBandwidth();
  for (auto& t : r.tg) t.roofline_pct = 100.0 * t.gbs / r.bandwidth_gbs;
  return r;
}

}  // namespace elm
