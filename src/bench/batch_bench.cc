#include "bench/batch_bench.h"

#include <algorithm>
#include <chrono>
#include <ctime>

#include "base/error.h"
#include "model/batch_step.h"
#include "model/session.h"

namespace elm {
namespace {

using BatchBenchClock = std::chrono::steady_clock;

double ProcessCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct StepTimes {
  Stat wall_ms, cpu_ms;
};

// Mean wall and CPU milliseconds of one step with n one-token items (a sample per repetition).
StepTimes TimeSteps(const std::shared_ptr<const Model>& model, int n,
                    const BatchBenchOptions& opt) {
  const int V = model->config().vocab_size;
  const int ctx = opt.depth + opt.steps + 1;
  std::vector<std::unique_ptr<Session>> sessions;
  for (int i = 0; i < n; ++i)
    sessions.push_back(std::make_unique<Session>(model, ctx, opt.kv_type));
  BatchStep step(model);
  std::vector<int> tok(static_cast<size_t>(n));
  std::vector<std::vector<float>> logits(static_cast<size_t>(n));
  std::vector<BatchItem> items(static_cast<size_t>(n));
  std::vector<double> ms, cpu;
  for (int rep = 0; rep < opt.warmup + opt.repetitions; ++rep) {
    for (int i = 0; i < n; ++i) {
      Session& s = *sessions[static_cast<size_t>(i)];
      s.Reset();
      if (opt.depth > 0)
        s.Forward(RandomTokens(opt.depth, V, 3 + static_cast<uint64_t>(i)),
                  logits[static_cast<size_t>(i)]);
      tok[static_cast<size_t>(i)] = (i * 31 + 1) % V;
    }
    const auto t0 = BatchBenchClock::now();
    const double c0 = ProcessCpuSeconds();
    for (int g = 0; g < opt.steps; ++g) {
      for (int i = 0; i < n; ++i) {
        const auto k = static_cast<size_t>(i);
        items[k] = {sessions[k].get(), std::span<const int>(&tok[k], 1), &logits[k]};
      }
      step.Forward(items);
      for (int i = 0; i < n; ++i) {  // the next token from the logits, as a stream would
        const auto k = static_cast<size_t>(i);
        tok[k] = static_cast<int>(std::max_element(logits[k].begin(), logits[k].end()) -
                                  logits[k].begin());
      }
    }
    const double sec = std::chrono::duration<double>(BatchBenchClock::now() - t0).count();
    const double csec = ProcessCpuSeconds() - c0;
    if (rep >= opt.warmup) {
      ms.push_back(1e3 * sec / opt.steps);
      cpu.push_back(1e3 * csec / opt.steps);
    }
  }
  return {SummarizeSamples(ms), SummarizeSamples(cpu)};
}

}  // namespace

std::vector<BatchBenchRow> RunBatchBench(const std::shared_ptr<const Model>& model,
                                         const BatchBenchOptions& opt) {
  if (opt.steps < 1) Fail("batch bench: steps must be at least 1, got ", opt.steps);
  if (opt.depth < 0) Fail("batch bench: depth must not be negative, got ", opt.depth);
  if (opt.repetitions < 1)
    Fail("batch bench: repetitions must be at least 1, got ", opt.repetitions);
  std::vector<int> streams = opt.streams;
  for (int n : streams)
    if (n < 1) Fail("batch bench: a stream count must be at least 1, got ", n);
  streams.push_back(1);
  std::sort(streams.begin(), streams.end());
  streams.erase(std::unique(streams.begin(), streams.end()), streams.end());
  std::vector<BatchBenchRow> rows;
  for (int n : streams) {
    BatchBenchRow r;
    r.streams = n;
    const StepTimes t = TimeSteps(model, n, opt);
    r.step_ms = t.wall_ms;
    r.cpu_ms = t.cpu_ms;
    r.best_step_ms = *std::min_element(r.step_ms.samples.begin(), r.step_ms.samples.end());
    r.tokens_per_s = 1e3 * n / r.step_ms.mean;
    r.step_over_single = r.step_ms.mean / (rows.empty() ? r.step_ms.mean : rows[0].step_ms.mean);
    r.speedup = r.tokens_per_s / (rows.empty() ? r.tokens_per_s : rows[0].tokens_per_s);
    rows.push_back(r);
  }
  return rows;
}

}  // namespace elm
