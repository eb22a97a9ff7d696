#include "eval/loglikelihood_batch.h"

#include <algorithm>
#include <deque>

#include "base/error.h"
#include "base/token_prefix.h"

namespace elm::eval {

namespace {

// One document in flight: its inputs, the prefix its requests share, and the branch groups
// that run after it.
struct BatchedDoc {
  size_t index = 0;  // into ScoreDocs' docs
  std::vector<std::vector<int>> inps;
  size_t shared = 0;              // the prefix fed once (before every request's first scored row)
  size_t fed = 0;                 // prefix positions in the cache so far
  std::vector<size_t> group_end;  // branch groups: requests [previous end, end)
  size_t group = 0;               // the next group to run
  // The item of the current step.
  std::vector<int> tokens, lengths;
  std::vector<float> logits;
  bool prefill = false;
  // Its pool slot's session, cached tokens and busy flag.
  Session* session = nullptr;
  std::vector<int>* cached = nullptr;
  bool* busy = nullptr;
};

// A document waits for one in flight that feeds at least this many more tokens of its prefix
// than any free session holds.
constexpr size_t kMinWaitTokens = 32;

}  // namespace

LoglikelihoodBatcher::LoglikelihoodBatcher(std::shared_ptr<const Model> model, int max_length,
                                           int batch_tokens, int sessions)
    : model_(std::move(model)),
      max_length_(max_length > 0 ? max_length : model_->config().max_context),
      batch_tokens_(batch_tokens),
      max_sessions_(
          static_cast<size_t>(sessions > 0 ? sessions : std::clamp(batch_tokens / 16, 2, 8))),
      step_(model_) {
  if (batch_tokens < 1) Fail("batch tokens must be at least 1, got ", batch_tokens);
}

LoglikelihoodBatcher::Slot& LoglikelihoodBatcher::TakeSlot(std::span<const int> prefix,
                                                           size_t* lcp) {
  Slot* best = nullptr;
  size_t best_lcp = 0;
  for (auto& s : slots_) {
    if (s->busy) continue;
    const size_t n = SharedPrefixLength(s->cached, prefix);
    if (!best || n > best_lcp) {
      best = s.get();
      best_lcp = n;
    }
  }
  if (!best || (best_lcp == 0 && slots_.size() < max_sessions_)) {
    slots_.push_back(std::make_unique<Slot>());
    best = slots_.back().get();
  }
  if (!best->session || best->session->context() < session_context_) {
    best->session = std::make_unique<Session>(model_, session_context_);
    best->cached.clear();
    best_lcp = 0;
  }
  best->session->Rewind(static_cast<int>(best_lcp));
  best->cached.resize(best_lcp);
  best->busy = true;
  *lcp = best_lcp;
  return *best;
}

std::vector<std::vector<RequestScore>> LoglikelihoodBatcher::ScoreDocs(
    std::span<const std::vector<LoglikelihoodScorer::Ids>> docs) {
  const int V = model_->config().vocab_size;
  const auto budget = static_cast<size_t>(batch_tokens_);
  std::vector<std::vector<RequestScore>> out(docs.size());
  for (const auto& reqs : docs)  // an input holds at most context + continuation - 1 tokens
    for (const auto& r : reqs)
      session_context_ = std::max<int>(
          session_context_,
          static_cast<int>(std::min<size_t>(static_cast<size_t>(max_length_),
                                            r.context.size() + r.continuation.size())));
  std::deque<BatchedDoc> active;
  size_t next = 0;
  std::vector<BatchItem> items;
  std::vector<BatchedDoc*> in_step;
  while (next < docs.size() || !active.empty()) {
    // Admit documents while sessions are free.
    while (next < docs.size() && active.size() < max_sessions_) {
      const std::vector<LoglikelihoodScorer::Ids>& reqs = docs[next];
      BatchedDoc d;
      d.index = next++;
      if (reqs.empty()) continue;
      d.shared = SIZE_MAX;
      for (const auto& r : reqs) {
        d.inps.push_back(CheckedModelInput(r.context, r.continuation, max_length_, V));
        d.shared = std::min({d.shared, d.inps.back().size() - r.continuation.size(),
                             SharedPrefixLength(d.inps.back(), d.inps.front())});
      }
      // Branch groups of at most batch_tokens rows; a longer branch sends the document to the
      // one-by-one scorer.
      size_t rows = 0;
      bool fits = true;
      for (size_t i = 0; i < d.inps.size(); ++i) {
        const size_t n = d.inps[i].size() - d.shared;
        if (n > budget) fits = false;
        if (rows + n > budget) {
          d.group_end.push_back(i);
          rows = 0;
        }
        rows += n;
      }
      d.group_end.push_back(d.inps.size());
      if (!fits) {
        if (!alone_) alone_ = std::make_unique<LoglikelihoodScorer>(model_, max_length_);
        out[d.index] = alone_->ScoreAll(reqs);
        continue;
      }
      const std::span<const int> prefix = std::span<const int>(d.inps.front()).first(d.shared);
      // A prefix that a document in flight is feeding already (few-shot examples shared across
      // documents: MMLU's first_n, TruthfulQA's primer): wait for that document to finish and
      // take its session, whose cache then holds the prefix, rather than feed it a second time
      // beside it. Documents that share less run side by side.
      size_t in_flight = 0, free = 0;
      for (const BatchedDoc& a : active)
        in_flight = std::max(
            in_flight,
            SharedPrefixLength(std::span<const int>(a.inps.front()).first(a.shared), prefix));
      for (const auto& s : slots_)
        if (!s->busy) free = std::max(free, SharedPrefixLength(s->cached, prefix));
      if (in_flight >= free + kMinWaitTokens) {
        next = d.index;
        break;
      }
      size_t lcp = 0;
      Slot& slot = TakeSlot(prefix, &lcp);
      d.session = slot.session.get();
      d.cached = &slot.cached;
      d.busy = &slot.busy;
      d.fed = lcp;
      tokens_reused_ += static_cast<int64_t>(lcp + d.shared * (d.inps.size() - 1));
      out[d.index].resize(d.inps.size());
      active.push_back(std::move(d));
    }
    if (active.empty()) break;

    // One step: each document in flight brings a prefill chunk or its next branch group, in
    // admission order, while rows remain (the first item always goes).
    size_t rows = 0;
    items.clear();
    in_step.clear();
    for (BatchedDoc& d : active) {
      d.tokens.clear();
      d.lengths.clear();
      if (d.fed < d.shared) {
        const size_t n = std::min(d.shared - d.fed, budget - rows);
        d.prefill = true;
        d.tokens.assign(d.inps.front().begin() + static_cast<std::ptrdiff_t>(d.fed),
                        d.inps.front().begin() + static_cast<std::ptrdiff_t>(d.fed + n));
        items.push_back({d.session, d.tokens, nullptr, 1, {}});
      } else {
        const size_t first = d.group == 0 ? 0 : d.group_end[d.group - 1];
        size_t n = 0;
        for (size_t i = first; i < d.group_end[d.group]; ++i) {
          d.lengths.push_back(static_cast<int>(d.inps[i].size() - d.shared));
          n += d.inps[i].size() - d.shared;
        }
        if (rows + n > budget && !items.empty()) break;
        d.prefill = false;
        d.session->Rewind(static_cast<int>(d.shared));  // after the previous group's last branch
        d.cached->resize(d.shared);
        for (size_t i = first; i < d.group_end[d.group]; ++i)
          d.tokens.insert(d.tokens.end(), d.inps[i].begin() + static_cast<std::ptrdiff_t>(d.shared),
                          d.inps[i].end());
        items.push_back({d.session, d.tokens, &d.logits, static_cast<int>(n), d.lengths});
      }
      rows += d.tokens.size();
      in_step.push_back(&d);
      if (rows >= budget) break;
    }
    step_.Forward(items);
    ++forwards_;
    tokens_forwarded_ += static_cast<int64_t>(rows);

    for (BatchedDoc* d : in_step) {
      if (d->prefill) {
        d->fed += d->tokens.size();
        d->cached->insert(d->cached->end(), d->tokens.begin(), d->tokens.end());
        continue;
      }
      const size_t first = d->group == 0 ? 0 : d->group_end[d->group - 1];
      const size_t end = d->group_end[d->group];
      size_t row_end = 0;
      for (size_t i = first; i < end; ++i) {
        row_end += d->inps[i].size() - d->shared;
        out[d->index][i] = ScoreContinuationRows(
            d->logits.data() + row_end * V, docs[d->index][i].continuation, static_cast<size_t>(V));
      }
      // The cache holds the prefix and the group's last branch.
      d->cached->insert(d->cached->end(),
                        d->inps[end - 1].begin() + static_cast<std::ptrdiff_t>(d->shared),
                        d->inps[end - 1].end());
      ++d->group;
    }
    // Finished documents free their sessions (the others keep their place in line).
    for (auto it = active.begin(); it != active.end();) {
      if (it->group == it->group_end.size()) {
        *it->busy = false;
        it = active.erase(it);
      } else {
        ++it;
      }
    }
  }
  return out;
}

}  // namespace elm::eval
