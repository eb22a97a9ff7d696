// Speculative decoding (docs/sampling.md, "Speculative decoding"): a cheap drafter proposes the
// next few tokens, the target model scores all of them in one forward pass, and the proposals are
// accepted or replaced by the rejection rule of Leviathan et al. (2023) / Chen et al. (2023):
// a drafted token d, drawn from the drafter's distribution q, is kept with probability
// min(1, p(d) / q(d)), p being the target's distribution as the plain sampler would process it
// (penalties, top-k, top-p, min-p, temperature); on rejection the token is drawn from
// norm(max(0, p - q)) and the step ends; when every proposal is kept, one more token is drawn
// from p. Each emitted token is then distributed exactly as plain sampling's, and greedy output
// (temperature 0: p and q are one-hot) is the target's own argmax sequence.
//
// Two drafters: a smaller or more quantized draft model with the same vocabulary
// (DraftModelDrafter, --draft-model) and prompt lookup (PromptLookupDrafter, --lookup-ngram:
// the continuation of the last earlier occurrence of the final n-gram, as Apple's
// generate_openelm.py does with prompt_lookup_num_tokens).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "base/rng.h"
#include "model/session.h"
#include "sampling/sampler.h"

namespace elm {

// Edits one row of logits before sampling (the decode loop's logit bias); `history` is the
// sequence the row continues.
using LogitEdit = std::function<void(std::span<float> logits, std::span<const int> history)>;

class Drafter {
 public:
  virtual ~Drafter() = default;
  // Appends up to `max` proposed tokens continuing `context` (the whole sequence so far; its last
  // token has not been run through the target yet) to `draft`, and for each the distribution it
  // was drawn from to `q` (a single token with probability 1 for a deterministic proposal).
  virtual void Propose(std::span<const int> context, int max, const SamplingParams& sampling,
                       const LogitEdit& edit, Rng& rng, std::vector<int>& draft,
                       std::vector<Candidates>& q) = 0;
};

// Proposals from a draft model, sampled with the same parameters as the target (greedy when the
// target is greedy). It keeps its own session and reuses the longest prefix of its cache that
// matches the context.
class DraftModelDrafter : public Drafter {
 public:
  // Throws elm::Error when the vocabularies differ in size. context: the draft session's
  // capacity (at least the target's).
  DraftModelDrafter(std::shared_ptr<const Model> draft, const Model& target, int context,
                    DType kv_type = DType::kF32);
  void Propose(std::span<const int> context, int max, const SamplingParams& sampling,
               const LogitEdit& edit, Rng& rng, std::vector<int>& draft,
               std::vector<Candidates>& q) override;

 private:
  Session session_;
  std::vector<int> fed_;  // the tokens in session_'s KV cache
  std::vector<float> logits_;
};

// Prompt lookup: finds the most recent earlier occurrence of the context's last n tokens
// (n = ngram, then ngram - 1, ... 1) and proposes the tokens that followed it.
class PromptLookupDrafter : public Drafter {
 public:
  explicit PromptLookupDrafter(int ngram);
  void Propose(std::span<const int> context, int max, const SamplingParams& sampling,
               const LogitEdit& edit, Rng& rng, std::vector<int>& draft,
               std::vector<Candidates>& q) override;

 private:
  int ngram_;
};

struct SpeculativeStats {
  int64_t steps = 0;     // target forward passes that verified proposals
  int64_t drafted = 0;   // tokens proposed
  int64_t accepted = 0;  // proposals kept
  double acceptance_rate() const { return drafted > 0 ? double(accepted) / double(drafted) : 0; }
};

// One verification step's rule on explicit distributions: given the target's p and the drafter's
// q (both as filled by SamplingDistribution) and the drafted token d (drawn from q), returns d
// when it is accepted (*accepted = true), else a token drawn from norm(max(0, p - q)).
int AcceptOrResample(const Candidates& p, const Candidates& q, int d, Rng& rng, bool* accepted);

// The speculation state of one conversation (a target session and the decode loop's calls on
// it): the drafter, the random stream of the acceptance tests and the statistics. The decode loop
// (generation/generator.h, GenerateOptions::speculative) calls Begin once per Generate and Step
// instead of one forward pass per token.
// The acceptance tests' seed for a request sampled with `sampling_seed`: a different stream from
// the sampler's (the same seed for both would make the first acceptance test reuse the sampler's
// first draw). generate, chat and the server all seed their decoders through this.
inline uint64_t AcceptanceSeedFor(uint64_t sampling_seed) {
  return sampling_seed ^ 0x9E3779B97F4A7C15ull;
}

class SpeculativeDecoder {
 public:
  // draft_max: most tokens proposed per step (>= 1). seed: the acceptance tests' random stream.
  SpeculativeDecoder(std::unique_ptr<Drafter> drafter, int draft_max, uint64_t seed);

  // Before decoding: the target session held `target_position` tokens before `prompt` was fed.
  // The tokens before the prompt are remembered from earlier calls when the session was only
  // rewound since (elm chat), so the drafter sees the whole conversation.
  void Begin(int target_position, std::span<const int> prompt);

  // One step. `history`: this call's prompt and generated tokens, its last one not yet run
  // through `target` (the target holds everything before it). Proposes at most
  // min(draft_max, max_tokens - 1) tokens (no more than fit the context), verifies them in one
  // forward pass and appends the emitted tokens (1 to proposals + 1) to `out`; `raw`, if set,
  // receives their rows of raw target logits [out.size(), V] (for logprobs). Afterwards the
  // target holds the old history and every emitted token but the last.
  void Step(Session& target, std::span<const int> history, const SamplingParams& sampling,
            const LogitEdit& edit, int max_tokens, std::vector<int>& out, std::vector<float>* raw);

  // After decoding: `history` is this call's prompt and every token it generated.
  void Finish(std::span<const int> history);

  const SpeculativeStats& stats() const { return stats_; }
  // Restarts the acceptance tests' random stream (a server slot's decoder, per request's seed).
  void Reseed(uint64_t seed) { rng_.Seed(seed); }

 private:
  std::unique_ptr<Drafter> drafter_;
  int draft_max_;
  Rng rng_;
  SpeculativeStats stats_;
  std::vector<int> context_;  // the whole sequence: earlier calls' tokens, then this call's
  size_t prefix_ = 0;         // context_[0, prefix_) came before this call's prompt
  // Scratch reused between steps.
  std::vector<int> draft_, tokens_, hist_;
  std::vector<Candidates> q_;
  Candidates p_;
  std::vector<float> logits_;
};

}  // namespace elm
