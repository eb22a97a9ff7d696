// Batched decoding without HTTP (`elm bench --streams N`): N sessions, each at the same depth,
// advance one token each per BatchStep::Forward (what `elm serve` runs per step with N streams,
// docs/server.md), timed step by step. Reports the aggregate generated tokens/s and each step's
// time against a one-stream step, the measure of how close a batched step comes to reading the
// weights once (docs/performance.md, "Batched decode steps").
#pragma once

#include <memory>
#include <vector>

#include "bench/speed_bench.h"
#include "model/model.h"

namespace elm {

struct BatchBenchOptions {
  std::vector<int> streams = {1, 4, 8};  // concurrent sequences per step (1 is always measured)
  int steps = 64;                        // decode steps timed per repetition
  int depth = 0;                         // context already in every sequence's cache
  int repetitions = 5;
  int warmup = 1;
  DType kv_type = DType::kF32;
};

struct BatchBenchRow {
  int streams = 0;
  Stat step_ms;  // one BatchStep::Forward of `streams` one-token items
  // Process CPU time per step (all threads, spinning OpenMP workers included): with --threads 1
  // on a shared machine, the measure least disturbed by other processes.
  Stat cpu_ms;
  double best_step_ms = 0;      // the fastest repetition's mean step (least disturbed by others)
  double tokens_per_s = 0;      // streams / mean step time: aggregate generation speed
  double step_over_single = 0;  // mean step time / the one-stream step's
  double speedup = 0;           // tokens_per_s / the one-stream tokens_per_s
};

// Rows in ascending stream count, the one-stream row first. Throws elm::Error for a stream count
// below 1, steps below 1, or a negative depth.
std::vector<BatchBenchRow> RunBatchBench(const std::shared_ptr<const Model>& model,
                                         const BatchBenchOptions& opt);

}  // namespace elm
