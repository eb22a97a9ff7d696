// llama-bench-style end-to-end speed measurement: prompt processing (pp) and token generation
// (tg, optionally after some context), with memory-bandwidth accounting.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/model.h"

namespace elm {

struct SpeedBenchOptions {
  int prompt_tokens = 512;        // pp: one forward over this many tokens (0 = skip)
  int gen_tokens = 128;           // tg: this many single-token steps (0 = skip)
  std::vector<int> depths = {0};  // tg is measured after this much context
  int repetitions = 5;
  int warmup = 1;
  double bandwidth_gbs = 0;     // memory roofline; 0 = measure it
  DType kv_type = DType::kF32;  // KV cache storage (f32, bf16, f16)
};

struct Stat {
  double mean = 0, sd = 0;
  std::vector<double> samples;
};

struct TgResult {
  int depth = 0;
  Stat tokens_per_s;
  double bytes_per_token = 0;  // weights + KV cache read per generated token (mean over the run)
  double gbs = 0;              // bytes_per_token × tokens/s
  double roofline_pct = 0;     // gbs / bandwidth
};

struct SpeedBenchResult {
  std::string model, weights, isa;
  int threads = 0;
  double bandwidth_gbs = 0;
  double weights_bytes = 0;
  Stat pp_tokens_per_s;
  double pp_gflops = 0;  // achieved, counting 2·params FLOPs per token plus attention
  std::vector<TgResult> tg;
  long peak_rss_bytes = 0;
  double kv_cache_bytes = 0;  // the KV cache allocated for the run's context
};

// Mean and sample standard deviation of repeated measurements (samples kept).
Stat SummarizeSamples(std::vector<double> v);

// n token ids drawn uniformly from [0, vocab), the same for the same seed (benchmark inputs).
std::vector<int> RandomTokens(int n, int vocab, uint64_t seed);

SpeedBenchResult RunSpeedBench(const std::shared_ptr<const Model>& model,
                               const SpeedBenchOptions& opt);
// Streams `bytes` of memory with all threads; returns GB/s (the bandwidth roofline).
double MeasureReadBandwidth(size_t bytes = size_t{512} << 20);

}  // namespace elm
