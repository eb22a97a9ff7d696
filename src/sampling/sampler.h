// Next-token sampling: the stages (penalties, greedy, top-k, top-p, min-p, temperature, softmax,
// draw) as free functions that can be tested one at a time, and Sampler, which chains them in
// llama.cpp's default order:
//
//   penalties (repetition, presence/frequency) on the raw logits
//   temperature == 0 ? greedy argmax of the penalized logits
//                    : top-k -> top-p -> min-p -> temperature -> softmax -> draw
//
// Truncation happens before temperature, so top-p and min-p judge the model's own (penalized)
// distribution, and temperature only reshapes what is left. See docs/sampling.md.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/rng.h"

namespace elm {

struct SamplingParams {
  float temperature = 0.8f;         // 0 -> greedy (argmax, first index on ties)
  int top_k = 40;                   // 0 -> off
  float top_p = 0.95f;              // 1 -> off
  float min_p = 0.05f;              // 0 -> off
  float repetition_penalty = 1.0f;  // HF: logit>0 -> logit/p, else logit*p; 1 -> off
  int repetition_window = 64;       // last N tokens (prompt + generated) considered; -1 = all
  float presence_penalty = 0.0f;    // OpenAI: logit -= presence if the token is in the window
  float frequency_penalty = 0.0f;   // OpenAI: logit -= frequency * count in the window
  uint64_t seed = 0xE1E1;           // same seed + same inputs -> same tokens
};

// Throws elm::Error naming the first invalid parameter: temperature < 0, top_k < 0, top_p outside
// (0, 1], min_p outside [0, 1], repetition_penalty <= 0, repetition_window < -1, or any NaN /
// infinite float. Sampler's constructor calls it; front ends may call it early for a nicer error.
void ValidateSamplingParams(const SamplingParams& p);

// ---- Stages on raw logits -------------------------------------------------------------------
// `history` is every token seen so far (prompt + generated); only its last `window` entries count
// (-1: all of them, 0: none). Ids outside [0, logits.size()) are ignored.

// HF semantics: each distinct token in the window is penalized exactly once, however often it
// occurs: a positive logit is divided by `penalty`, a zero or negative one multiplied by it.
// penalty == 1 is a no-op.
void ApplyRepetitionPenalty(std::span<float> logits, std::span<const int> history, float penalty,
                            int window);

// OpenAI semantics: logit -= frequency * count + presence * (count > 0), count being the number
// of occurrences in the window.
void ApplyPresenceFrequencyPenalty(std::span<float> logits, std::span<const int> history,
                                   float presence, float frequency, int window);

// Index of the largest logit, the first one on ties. NaN never wins; if no logit is greater than
// -inf (all -inf/NaN, or empty) the result is 0, so the caller always gets a valid-looking id.
int Greedy(std::span<const float> logits);

// ---- Stages on candidate lists --------------------------------------------------------------

struct Candidate {
  int id;
  float logit;
  float prob = 0.0f;  // filled by Softmax
};

// The surviving tokens of one sampling step. `sorted` means data is ordered best first: by logit
// descending, then by id ascending. The id tie-break makes every truncation deterministic: when
// equal logits straddle a cut, the lower ids are kept.
// Precondition of every stage below: no NaN logits (InitCandidates guarantees it).
struct Candidates {
  std::vector<Candidate> data;
  bool sorted = false;
};

// Builds the candidate list from raw logits, reusing out's storage. NaN and -inf logits are
// impossible tokens and are left out. If any logit is +inf, only the +inf tokens are kept, each
// with logit 0, i.e. they share the probability uniformly. The result may be empty (no possible
// token at all).
void InitCandidates(std::span<const float> logits, Candidates& out);

// Same candidates as InitCandidates(logits, out) followed by TopK(out, k) -- sorted whenever
// 0 < k < logits.size(), even if fewer than k tokens are possible -- but without materializing
// V candidates: one pass over the logits collects contenders in a small buffer that is cut back
// to the k best whenever it fills, and almost every logit is rejected, a block of 16 at a time,
// by comparison with the current k-th best. This is the Sampler's path whenever 0 < k < V (the
// default chain), and about 20 times faster than the two-step version at V = 32000.
void InitTopKCandidates(std::span<const float> logits, int k, Candidates& out);

// Keeps the k best candidates (k <= 0: off). Selects with nth_element, then sorts only the k
// survivors, so the cost is O(n + k log k) rather than a full sort.
void TopK(Candidates& c, int k);

// Nucleus: keeps the smallest best-first prefix whose cumulative probability (softmax of the
// current candidates) reaches p, never fewer than one token. p >= 1: off. Equality is judged with
// a 1e-6 slack so that {0.5, 0.3, 0.2} with p = 0.8 keeps two tokens despite float rounding.
// An unsorted list is not fully sorted: a histogram of the weights by logit picks out the few
// candidates that can be in the nucleus, and only those are sorted (O(n + m log m) for a nucleus
// of about m tokens).
void TopP(Candidates& c, float p);

// Keeps candidates whose probability is >= min_p * (largest probability); the best token always
// survives. min_p <= 0: off. Compared as logit - max_logit >= log(min_p) - 1e-6 (same slack as
// TopP). Keeps the current order.
void MinP(Candidates& c, float min_p);

// Scales logits by 1/t. The maximum is subtracted first (softmax does not care) so a tiny t cannot
// overflow to +inf: afterwards the best logit is 0 and logit_i = (old_i - old_max) / t.
// t <= 0 means greedy: only the best candidate (lowest id among equal logits) is kept.
void ApplyTemperature(Candidates& c, float t);

// Fills prob with the softmax of the logits (max-subtracted, accumulated in double).
void Softmax(Candidates& c);

// Draws a candidate with probability prob / sum(prob) and returns its token id. Uses one
// Rng::NextDouble(). Throws elm::Error if c is empty or holds no positive probability.
int SampleFromDistribution(const Candidates& c, Rng& rng);

// Same on a plain probability vector (need not be normalized; NaN and negative entries count as
// 0); returns the index drawn.
int SampleFromDistribution(std::span<const float> probs, Rng& rng);

// ---- The chain ------------------------------------------------------------------------------

class Sampler {
 public:
  // Throws elm::Error if p is invalid (see ValidateSamplingParams).
  explicit Sampler(const SamplingParams& p);

  // logits: [V] scores for the next token; they are modified in place (penalties). history: the
  // tokens seen so far, prompt + generated. Returns the chosen id in [0, V). If every logit is
  // NaN or -inf the result is 0 (deterministic, no random number consumed). Throws elm::Error if
  // logits is empty.
  int Sample(std::span<float> logits, std::span<const int> history);

  // Restarts the random stream as if the Sampler had just been built with this seed.
  void Reseed(uint64_t seed) { rng_.Seed(seed); }

  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  Rng rng_;
  Candidates candidates_;  // reused between calls: no allocation per token after the first
};

}  // namespace elm
