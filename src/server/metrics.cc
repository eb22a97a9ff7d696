#include "server/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace elm::server {

namespace {

// Prometheus writes floats in Go's shortest form; any float literal parses (+Inf aside).
std::string MetricNumber(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

void MetricHeader(std::string& out, const std::string& name, const char* type, const char* help) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void MetricLine(std::string& out, const std::string& name, double value,
                const std::string& labels = "") {
  out += name;
  if (!labels.empty()) out += "{" + labels + "}";
  out += " " + MetricNumber(value) + "\n";
}

void MetricCounter(std::string& out, const std::string& name, const char* help, double value) {
  MetricHeader(out, name, "counter", help);
  MetricLine(out, name, value);
}

void MetricGauge(std::string& out, const std::string& name, const char* help, double value) {
  MetricHeader(out, name, "gauge", help);
  MetricLine(out, name, value);
}

}  // namespace

LatencyHistogram::LatencyHistogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void LatencyHistogram::Observe(double seconds, uint64_t times) {
  const size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), seconds) -
                                       bounds_.begin());
  counts_[i] += times;
  sum_ += seconds * static_cast<double>(times);
  count_ += times;
}

void LatencyHistogram::Render(std::string& out, const std::string& name) const {
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i];
    const double le = i < bounds_.size() ? bounds_[i] : HUGE_VAL;
    MetricLine(out, name + "_bucket", static_cast<double>(cumulative),
               "le=\"" + MetricNumber(le) + "\"");
  }
  MetricLine(out, name + "_sum", sum_);
  MetricLine(out, name + "_count", static_cast<double>(count_));
}

ServerMetrics::ServerMetrics()
    : ttft_({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}),
      per_token_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}) {}

void ServerMetrics::RecordGeneration(int prompt_tokens, int cached, int generated,
                                     double first_token_s, double decode_s) {
  std::lock_guard<std::mutex> lock(mu_);
  ++generations_;
  prompt_tokens_ += static_cast<uint64_t>(std::max(0, prompt_tokens));
  cached_tokens_ += static_cast<uint64_t>(std::max(0, cached));
  generated_tokens_ += static_cast<uint64_t>(std::max(0, generated));
  ++(cached > 0 ? cache_hits_ : cache_misses_);
  if (generated > 0) ttft_.Observe(first_token_s);
  // Each token after the first, at the generation's mean pace.
  if (generated > 1) per_token_.Observe(decode_s / (generated - 1), generated - 1);
}

void ServerMetrics::RecordSpeculation(int64_t drafted, int64_t accepted) {
  std::lock_guard<std::mutex> lock(mu_);
  ++spec_generations_;
  spec_drafted_ += static_cast<uint64_t>(std::max<int64_t>(0, drafted));
  spec_accepted_ += static_cast<uint64_t>(std::max<int64_t>(0, accepted));
}

std::string ServerMetrics::Render(const MetricsSnapshot& s) const {
  std::string out;
  MetricHeader(out, "elm_requests_total", "counter", "Generation requests by outcome.");
  MetricLine(out, "elm_requests_total", static_cast<double>(s.completed), "outcome=\"completed\"");
  MetricLine(out, "elm_requests_total", static_cast<double>(s.cancelled), "outcome=\"cancelled\"");
  MetricLine(out, "elm_requests_total", static_cast<double>(s.rejected), "outcome=\"rejected\"");
  MetricLine(out, "elm_requests_total", static_cast<double>(s.failed), "outcome=\"failed\"");
  MetricGauge(out, "elm_slots", "Inference slots.", s.slots);
  MetricGauge(out, "elm_slots_busy", "Slots serving a request.", s.slots_busy);
  MetricGauge(out, "elm_queue_waiting", "Requests waiting for a slot.", s.queue_waiting);
  MetricGauge(out, "elm_queue_max", "Requests that may wait for a slot.", s.queue_max);
  std::lock_guard<std::mutex> lock(mu_);
  MetricCounter(out, "elm_generations_total", "Generations run (one per prompt).",
                static_cast<double>(generations_));
  MetricCounter(out, "elm_prompt_tokens_total", "Prompt tokens of all generations.",
                static_cast<double>(prompt_tokens_));
  MetricCounter(out, "elm_prompt_tokens_cached_total",
                "Prompt tokens whose KV came from the prefix cache.",
                static_cast<double>(cached_tokens_));
  MetricCounter(out, "elm_generated_tokens_total", "Tokens generated.",
                static_cast<double>(generated_tokens_));
  MetricCounter(out, "elm_prefix_cache_hits_total", "Generations that reused a cached prefix.",
                static_cast<double>(cache_hits_));
  MetricCounter(out, "elm_prefix_cache_misses_total",
                "Generations that computed their whole prompt.",
                static_cast<double>(cache_misses_));
  MetricCounter(out, "elm_speculative_generations_total",
                "Generations decoded speculatively (draft model or prompt lookup).",
                static_cast<double>(spec_generations_));
  MetricCounter(out, "elm_speculative_drafted_tokens_total",
                "Tokens the drafter proposed in speculative generations.",
                static_cast<double>(spec_drafted_));
  MetricCounter(out, "elm_speculative_accepted_tokens_total",
                "Proposed tokens the model kept in speculative generations.",
                static_cast<double>(spec_accepted_));
  if (s.batching) {
    MetricCounter(out, "elm_batch_steps_total", "Batched forward steps.",
                  static_cast<double>(s.batch_steps));
    MetricCounter(out, "elm_batch_rows_total", "Tokens run by batched steps.",
                  static_cast<double>(s.batch_rows));
    MetricCounter(
        out, "elm_batch_sequences_total",
        "Sequences in batched steps, summed over steps (divide by steps: mean batch size).",
        static_cast<double>(s.batch_sequences));
  }
  if (s.prefix_store) {
    MetricGauge(out, "elm_prefix_store_entries", "KV prefixes in the prefix store (--cache-ram).",
                static_cast<double>(s.store_entries));
    MetricGauge(out, "elm_prefix_store_bytes", "Bytes of KV in the prefix store.",
                static_cast<double>(s.store_bytes));
    MetricGauge(out, "elm_prefix_store_budget_bytes", "The prefix store's budget (--cache-ram).",
                static_cast<double>(s.store_budget));
    MetricCounter(out, "elm_prefix_store_saves_total",
                  "Slot prefixes saved to the prefix store before the slot was reused.",
                  static_cast<double>(s.store_saves));
    MetricCounter(out, "elm_prefix_store_hits_total",
                  "Generations whose prefix was restored from the prefix store.",
                  static_cast<double>(s.store_hits));
    MetricCounter(out, "elm_prefix_store_evictions_total",
                  "Entries dropped, least recently used first, to stay within the budget.",
                  static_cast<double>(s.store_evictions));
  }
  MetricHeader(out, "elm_time_to_first_token_seconds", "histogram",
               "From the start of a generation (slot taken) to its first token's logits.");
  ttft_.Render(out, "elm_time_to_first_token_seconds");
  MetricHeader(out, "elm_time_per_output_token_seconds", "histogram",
               "Time per generated token after the first (each at its generation's mean pace).");
  per_token_.Render(out, "elm_time_per_output_token_seconds");
  return out;
}

}  // namespace elm::server
