#include "generation/speculative.h"

#include <algorithm>
#include <utility>

#include "base/error.h"
#include "base/token_prefix.h"
#include "sampling/sampling_distribution.h"

namespace elm {

// ---- The acceptance rule ----------------------------------------------------------------------

int AcceptOrResample(const Candidates& p, const Candidates& q, int d, Rng& rng, bool* accepted) {
  const double pd = ProbabilityOf(p, d), qd = ProbabilityOf(q, d);
  // Accept with probability min(1, p(d) / q(d)); no random number is needed when p(d) >= q(d)
  // (always so for a greedy target that agrees).
  if (pd >= qd || (qd > 0 && rng.NextDouble() * qd < pd)) {
    *accepted = true;
    return d;
  }
  *accepted = false;
  // The residual norm(max(0, p - q)): only tokens in p's support can be positive.
  std::vector<float> residual(p.data.size());
  double total = 0;
  for (size_t i = 0; i < p.data.size(); ++i) {
    const double r = p.data[i].prob - ProbabilityOf(q, p.data[i].id);
    residual[i] = r > 0 ? static_cast<float>(r) : 0.0f;
    total += residual[i];
  }
  // p == q up to rounding: rejection had probability ~0 and the residual is noise; p is the
  // limit of the rule.
  if (!(total > 0)) return SampleFromDistribution(p, rng);
  return p.data[static_cast<size_t>(SampleFromDistribution(residual, rng))].id;
}

// ---- Drafters --------------------------------------------------------------------------------

namespace {

// Draws from a distribution filled by SamplingDistribution; a single token needs no random number
// (greedy stays deterministic).
int DrawSpeculative(const Candidates& dist, Rng& rng) {
  return dist.data.size() == 1 ? dist.data.front().id : SampleFromDistribution(dist, rng);
}

}  // namespace

DraftModelDrafter::DraftModelDrafter(std::shared_ptr<const Model> draft, const Model& target,
                                     int context, DType kv_type)
    : session_(std::move(draft), context, kv_type) {
  const int dv = session_.model().config().vocab_size, tv = target.config().vocab_size;
  if (dv != tv)
    Fail("the draft model's vocabulary has ", dv, " tokens but the model's has ", tv,
         "; speculative decoding needs a draft model with the same vocabulary");
}

void DraftModelDrafter::Propose(std::span<const int> context, int max,
                                const SamplingParams& sampling, const LogitEdit& edit, Rng& rng,
                                std::vector<int>& draft, std::vector<Candidates>& q) {
  if (max <= 0 || context.empty()) return;
  // Reuse the longest common prefix of the cache; at least the last token is run again for the
  // logits of the next position.
  size_t keep = SharedPrefixLength(fed_, context, context.size() - 1);
  // A context longer than the draft session (cannot happen with equal capacities): its tail.
  const size_t cap = static_cast<size_t>(session_.context());
  const size_t budget = cap > static_cast<size_t>(max) ? cap - static_cast<size_t>(max) : 0;
  if (context.size() > budget) {
    if (budget == 0) return;
    context = context.last(budget);
    keep = 0;
    fed_.clear();
    session_.Reset();
  }
  session_.Rewind(static_cast<int>(keep));
  fed_.resize(keep);
  session_.Forward(context.subspan(keep), logits_);
  fed_.insert(fed_.end(), context.begin() + static_cast<ptrdiff_t>(keep), context.end());
  std::vector<int> hist(context.begin(), context.end());
  for (int i = 0; i < max; ++i) {
    if (edit) edit(logits_, hist);
    Candidates dist;
    SamplingDistribution(sampling, logits_, hist, dist);
    const int d = DrawSpeculative(dist, rng);
    draft.push_back(d);
    q.push_back(std::move(dist));
    hist.push_back(d);
    if (i + 1 < max) {
      session_.Forward(std::span<const int>(&d, 1), logits_);
      fed_.push_back(d);
    }
  }
}

PromptLookupDrafter::PromptLookupDrafter(int ngram) : ngram_(ngram) {
  if (ngram < 1) Fail("--lookup-ngram must be >= 1, got ", ngram);
}

void PromptLookupDrafter::Propose(std::span<const int> context, int max, const SamplingParams&,
                                  const LogitEdit&, Rng&, std::vector<int>& draft,
                                  std::vector<Candidates>& q) {
  const size_t n_ctx = context.size();
  for (size_t n = std::min<size_t>(static_cast<size_t>(ngram_), n_ctx - 1); n >= 1; --n) {
    const auto tail = context.last(n);
    // The latest start s < n_ctx - n whose n tokens equal the tail and that has a continuation.
    for (size_t s = n_ctx - n; s-- > 0;) {
      if (!std::equal(tail.begin(), tail.end(), context.begin() + static_cast<ptrdiff_t>(s)))
        continue;
      const size_t from = s + n;
      const size_t to = std::min(n_ctx, from + static_cast<size_t>(max));
      for (size_t i = from; i < to; ++i) {
        draft.push_back(context[i]);
        q.push_back(Candidates{{Candidate{context[i], 0.0f, 1.0f}}, true});
      }
      return;
    }
    if (n == 1) break;
  }
}

// ---- The decoder -----------------------------------------------------------------------------

SpeculativeDecoder::SpeculativeDecoder(std::unique_ptr<Drafter> drafter, int draft_max,
                                       uint64_t seed)
    : drafter_(std::move(drafter)), draft_max_(draft_max), rng_(seed) {
  if (draft_max < 1) Fail("--draft-max must be >= 1, got ", draft_max);
}

void SpeculativeDecoder::Begin(int target_position, std::span<const int> prompt) {
  const auto held = static_cast<size_t>(std::max(0, target_position));
  // The session was only rewound since the last call: its tokens are a prefix of what we saw.
  // Otherwise what it holds is unknown, and the drafter starts from the prompt.
  if (held <= context_.size())
    context_.resize(held);
  else
    context_.clear();
  prefix_ = context_.size();
  context_.insert(context_.end(), prompt.begin(), prompt.end());
}

void SpeculativeDecoder::Finish(std::span<const int> history) {
  context_.resize(prefix_);
  context_.insert(context_.end(), history.begin(), history.end());
}

void SpeculativeDecoder::Step(Session& target, std::span<const int> history,
                              const SamplingParams& sampling, const LogitEdit& edit, int max_tokens,
                              std::vector<int>& out, std::vector<float>* raw) {
  if (history.empty()) Fail("speculative step: empty history");
  Finish(history);
  const int pos = target.position();
  const int room = target.context() - pos - 1;  // proposals that fit after the last token
  const int k_max = std::min({draft_max_, room, max_tokens - 1});
  draft_.clear();
  q_.clear();
  if (k_max > 0) drafter_->Propose(context_, k_max, sampling, edit, rng_, draft_, q_);
  if (draft_.size() > static_cast<size_t>(std::max(0, k_max))) {
    draft_.resize(static_cast<size_t>(std::max(0, k_max)));
    q_.resize(draft_.size());
  }
  const size_t k = draft_.size();
  tokens_.assign(1, history.back());
  tokens_.insert(tokens_.end(), draft_.begin(), draft_.end());
  ForwardOptions fo;
  fo.all_logits = true;
  target.Forward(tokens_, logits_, fo);
  const size_t V = static_cast<size_t>(target.model().config().vocab_size);
  if (raw) raw->clear();
  hist_.assign(history.begin(), history.end());
  const size_t first = out.size();
  if (k > 0) ++stats_.steps;
  stats_.drafted += static_cast<int64_t>(k);
  for (size_t i = 0; i <= k; ++i) {
    const std::span<float> row(logits_.data() + i * V, V);
    if (raw) raw->insert(raw->end(), row.begin(), row.end());
    if (edit) edit(row, hist_);
    SamplingDistribution(sampling, row, hist_, p_);
    if (i == k) {  // every proposal kept: one more token from the target's own distribution
      out.push_back(DrawSpeculative(p_, rng_));
      break;
    }
    bool accepted = false;
    const int id = AcceptOrResample(p_, q_[i], draft_[i], rng_, &accepted);
    out.push_back(id);
    if (!accepted) break;
    ++stats_.accepted;
    hist_.push_back(id);
  }
  // The target ran the last token and every proposal; it keeps those now committed.
  target.Rewind(pos + static_cast<int>(out.size() - first));
}

}  // namespace elm
