// The distribution Sampler::Sample draws from, as an explicit list of (token, probability):
// the same stages in the same order (penalties, then greedy, or top-k -> top-p -> min-p ->
// temperature -> softmax). Speculative decoding (generation/speculative.h) needs it to accept or
// reject a drafted token by the probabilities the plain sampler would have used
// (docs/sampling.md, "Speculative decoding").
#pragma once

#include <span>

#include "sampling/sampler.h"

namespace elm {

// Fills `out` with the tokens Sampler(p).Sample(logits, history) can return and their
// probabilities (summing to 1, no particular order). Greedy (temperature 0), or no possible token
// at all, gives one token with probability 1 (the id Sample returns then). `logits` is modified
// in place (the penalties), as by Sample.
void SamplingDistribution(const SamplingParams& p, std::span<float> logits,
                          std::span<const int> history, Candidates& out);

// The probability of `id` in a distribution filled by SamplingDistribution (0 when absent).
double ProbabilityOf(const Candidates& dist, int id);

}  // namespace elm
