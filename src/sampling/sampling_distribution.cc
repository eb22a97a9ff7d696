#include "sampling/sampling_distribution.h"

namespace elm {

void SamplingDistribution(const SamplingParams& p, std::span<float> logits,
                          std::span<const int> history, Candidates& out) {
  ApplyRepetitionPenalty(logits, history, p.repetition_penalty, p.repetition_window);
  ApplyPresenceFrequencyPenalty(logits, history, p.presence_penalty, p.frequency_penalty,
                                p.repetition_window);
  auto one_token = [&](int id) {
    out.data.assign(1, Candidate{id, 0.0f, 1.0f});
    out.sorted = true;
  };
  if (p.temperature == 0.0f) return one_token(Greedy(logits));
  InitTopKCandidates(logits, p.top_k, out);
  if (out.data.empty()) return one_token(0);  // Sample's deterministic fallback
  TopP(out, p.top_p);
  MinP(out, p.min_p);
  ApplyTemperature(out, p.temperature);
  Softmax(out);
}

double ProbabilityOf(const Candidates& dist, int id) {
  for (const Candidate& c : dist.data)
    if (c.id == id) return c.prob;
  return 0.0;
}

}  // namespace elm
