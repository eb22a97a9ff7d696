// Counters and latency histograms for GET /metrics, in Prometheus text exposition format 0.0.4
// (docs/server.md "Metrics"). Thread-safe; recording takes one short lock.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace elm::server {

// A cumulative histogram with fixed upper bounds (seconds), as Prometheus reads one.
class LatencyHistogram {
 public:
  explicit LatencyHistogram(std::vector<double> bounds);
  void Observe(double seconds, uint64_t times = 1);
  // The _bucket, _sum and _count lines of metric `name` (after its # HELP / # TYPE lines).
  void Render(std::string& out, const std::string& name) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bound, not cumulative; the last one is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

// What the /metrics page reports beside the counters kept here: values read at render time.
struct MetricsSnapshot {
  int slots = 0, slots_busy = 0, queue_waiting = 0, queue_max = 0;
  uint64_t completed = 0, cancelled = 0, rejected = 0, failed = 0;
  bool batching = false;
  uint64_t batch_steps = 0, batch_rows = 0, batch_sequences = 0;
  bool prefix_store = false;  // server/prefix_store.h
  uint64_t store_entries = 0, store_bytes = 0, store_budget = 0;
  uint64_t store_saves = 0, store_hits = 0, store_evictions = 0;
};

class ServerMetrics {
 public:
  ServerMetrics();
  // One finished generation: its prompt (of which `cached` came from the prefix cache), the
  // tokens generated, and its times to the first token and from the first to the last.
  void RecordGeneration(int prompt_tokens, int cached, int generated, double first_token_s,
                        double decode_s);
  // One speculatively decoded generation: the tokens its drafter proposed and the model kept.
  void RecordSpeculation(int64_t drafted, int64_t accepted);
  // The page: the counters here and `snap`.
  std::string Render(const MetricsSnapshot& snap) const;

 private:
  mutable std::mutex mu_;
  uint64_t generations_ = 0, prompt_tokens_ = 0, cached_tokens_ = 0, generated_tokens_ = 0;
  uint64_t cache_hits_ = 0, cache_misses_ = 0;
  uint64_t spec_generations_ = 0, spec_drafted_ = 0, spec_accepted_ = 0;
  LatencyHistogram ttft_, per_token_;
};

}  // namespace elm::server
