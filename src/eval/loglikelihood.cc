#include "eval/loglikelihood.h"

#include <algorithm>

#include "base/error.h"
#include "base/token_prefix.h"
#include "kernels/log_softmax.h"
#include "text/py_text.h"

namespace elm::eval {

EncodedRequest EncodePair(const Tokenizer& tok, std::string_view context,
                          std::string_view continuation, bool add_bos) {
  EncodedRequest r;
  if (context.empty()) {
    // HFLM.loglikelihood: an empty context becomes the prefix token (BOS, else EOS), and the
    // continuation is encoded alone with the same special-token policy as any text.
    const int prefix = tok.bos_id() >= 0 ? tok.bos_id() : tok.eos_id();
    if (prefix < 0) Fail("empty context but the tokenizer has neither BOS nor EOS");
    r.continuation = continuation;
    r.context_ids = {prefix};
    r.continuation_ids = tok.Encode(continuation, add_bos);
  } else {
    // Trailing whitespace of the context belongs to the continuation: SentencePiece attaches
    // spaces to the following word ("▁word"), so this keeps the continuation's tokens natural.
    const size_t n = text::TrailingSpaceBytes(context);
    r.context = context.substr(0, context.size() - n);
    r.continuation = std::string(context.substr(context.size() - n)) + std::string(continuation);
    // Joint tokenization, split at the context's own length: merges across the boundary land
    // in the continuation, exactly as lm-eval does (whole[:len(ctx)] need not equal ctx).
    const std::vector<int> whole = tok.Encode(r.context + r.continuation, add_bos);
    r.context_ids = tok.Encode(r.context, add_bos);
    if (whole.size() > r.context_ids.size())
      r.continuation_ids.assign(whole.begin() + static_cast<std::ptrdiff_t>(r.context_ids.size()),
                                whole.end());
  }
  if (r.continuation_ids.empty())
    Fail("continuation \"", std::string(continuation), "\" has no tokens after context \"",
         std::string(context.substr(context.size() > 60 ? context.size() - 60 : 0)), "\"");
  return r;
}

std::vector<int> ModelInput(std::span<const int> context, std::span<const int> continuation,
                            int max_length) {
  std::vector<int> full(context.begin(), context.end());
  full.insert(full.end(), continuation.begin(), continuation.end());
  const size_t keep = std::min(full.size(), static_cast<size_t>(max_length) + 1);
  return std::vector<int>(full.end() - static_cast<std::ptrdiff_t>(keep), full.end() - 1);
}

float TokenLogProb(std::span<const float> row, int id, bool* is_argmax) {
  const RowLogSoftmax lsm(row);
  if (is_argmax) *is_argmax = lsm.argmax() == static_cast<size_t>(id);
  return static_cast<float>(lsm.ShiftedLogProb(row[id]));
}

LoglikelihoodScorer::LoglikelihoodScorer(std::shared_ptr<const Model> model, int max_length)
    : session_(model, max_length > 0 ? max_length : model->config().max_context),
      max_length_(session_.context()) {}

void LoglikelihoodScorer::Reset() {
  session_.Reset();
  cached_.clear();
}

void LoglikelihoodScorer::Feed(std::span<const int> tokens, bool all_logits) {
  ForwardOptions opt;
  opt.all_logits = all_logits;
  session_.Forward(tokens, logits_, opt);
  cached_.insert(cached_.end(), tokens.begin(), tokens.end());
  tokens_forwarded_ += static_cast<int64_t>(tokens.size());
}

std::vector<int> CheckedModelInput(std::span<const int> context_ids,
                                   std::span<const int> continuation_ids, int max_length,
                                   int vocab_size) {
  const size_t c = continuation_ids.size();
  if (c == 0) Fail("loglikelihood request with an empty continuation");
  if (c > static_cast<size_t>(max_length))
    Fail("continuation of ", c, " tokens does not fit the context of ", max_length, " tokens");
  for (int id : continuation_ids)  // the last one is never fed, so Forward cannot check it
    if (id < 0 || id >= vocab_size)
      Fail("continuation token id ", id, " is out of range [0, ", vocab_size, ")");
  return ModelInput(context_ids, continuation_ids, max_length);
}

std::vector<int> LoglikelihoodScorer::Input(std::span<const int> context_ids,
                                            std::span<const int> continuation_ids) {
  return CheckedModelInput(context_ids, continuation_ids, max_length_,
                           session_.model().config().vocab_size);
}

size_t LoglikelihoodScorer::ReusePrefix(std::span<const int> inp, size_t limit) {
  const size_t lcp = prefix_reuse_ ? SharedPrefixLength(cached_, inp, limit) : 0;
  session_.Rewind(static_cast<int>(lcp));
  cached_.resize(lcp);
  tokens_reused_ += static_cast<int64_t>(lcp);
  return lcp;
}

RequestScore LoglikelihoodScorer::ScoreRows(const float* rows_end,
                                            std::span<const int> continuation) const {
  return ScoreContinuationRows(rows_end, continuation,
                               static_cast<size_t>(session_.model().config().vocab_size));
}

RequestScore ScoreContinuationRows(const float* rows_end, std::span<const int> continuation,
                                   size_t V) {
  const size_t c = continuation.size();
  RequestScore r;
  r.token_logprobs.resize(c);
  for (size_t j = 0; j < c; ++j) {
    const float* row = rows_end - (c - j) * V;
    bool greedy = false;
    r.token_logprobs[j] = TokenLogProb(std::span<const float>(row, V), continuation[j], &greedy);
    r.loglikelihood += r.token_logprobs[j];
    r.is_greedy = r.is_greedy && greedy;
  }
  return r;
}

RequestScore LoglikelihoodScorer::Score(std::span<const int> context_ids,
                                        std::span<const int> continuation_ids) {
  const std::vector<int> inp = Input(context_ids, continuation_ids);
  const size_t first_scored = inp.size() - continuation_ids.size();  // first scored row

  // Reuse the cached keys/values of the longest common prefix, but feed every position that
  // produces a scored row.
  const size_t lcp = ReusePrefix(inp, first_scored);
  // Prefill the unshared context apart from the scored tail: the context's rows need no
  // logits, and that saves the lm_head product on each of them.
  constexpr size_t kMinSplit = 8;
  size_t start = lcp;
  if (prefix_reuse_ && first_scored - lcp >= kMinSplit) {
    Feed(std::span<const int>(inp).subspan(lcp, first_scored - lcp), false);
    start = first_scored;
  }
  Feed(std::span<const int>(inp).subspan(start), true);
  return ScoreRows(logits_.data() + logits_.size(), continuation_ids);
}

std::vector<RequestScore> LoglikelihoodScorer::ScoreAll(std::span<const Ids> requests) {
  std::vector<RequestScore> out;
  out.reserve(requests.size());
  // The inputs, and the prefix all of them share before their first scored row.
  std::vector<std::vector<int>> inps;
  size_t shared = SIZE_MAX;
  for (const Ids& r : requests) {
    inps.push_back(Input(r.context, r.continuation));
    const std::vector<int>& inp = inps.back();
    shared = std::min(shared, inp.size() - r.continuation.size());
    for (size_t i = 0; i < shared && i < inps.front().size(); ++i)
      if (inp[i] != inps.front()[i]) shared = i;
  }
  if (!branches_ || !prefix_reuse_ || requests.size() < 2 || shared == 0 || shared == SIZE_MAX) {
    for (const Ids& r : requests) out.push_back(Score(r.context, r.continuation));
    return out;
  }
  const size_t lcp = ReusePrefix(inps.front(), shared);
  if (shared > lcp) Feed(std::span<const int>(inps.front()).subspan(lcp, shared - lcp), false);

  // Branch groups of at most Session::kMaxBatch tokens; a longer request goes alone, by Score.
  const auto V = static_cast<size_t>(session_.model().config().vocab_size);
  out.resize(requests.size());
  std::vector<int> tokens, lengths;
  size_t first = 0;                   // the group's first request
  bool first_counted = false;         // the shared prefix counted as fed once
  auto run_group = [&](size_t end) {  // runs requests [first, end) from the shared prefix
    if (lengths.empty()) return;
    session_.Rewind(static_cast<int>(shared));
    cached_.resize(shared);
    ForwardOptions opt;
    opt.all_logits = true;
    opt.branches = lengths;
    session_.Forward(tokens, logits_, opt);
    tokens_forwarded_ += static_cast<int64_t>(tokens.size());
    // Every branch but the first one of the document reads the shared prefix from the cache
    // (as Score one by one would reuse it).
    tokens_reused_ += static_cast<int64_t>(shared) *
                      static_cast<int64_t>(lengths.size() - (first_counted ? 0 : 1));
    first_counted = true;
    size_t row_end = 0;
    for (size_t i = first; i < end; ++i) {
      row_end += inps[i].size() - shared;
      out[i] = ScoreRows(logits_.data() + row_end * V, requests[i].continuation);
    }
    // The cache holds the prefix and the last branch.
    cached_.insert(cached_.end(), inps[end - 1].begin() + static_cast<std::ptrdiff_t>(shared),
                   inps[end - 1].end());
    tokens.clear();
    lengths.clear();
  };
  for (size_t i = 0; i < requests.size(); ++i) {
    const size_t n = inps[i].size() - shared;
    if (n > static_cast<size_t>(Session::kMaxBatch)) {
      run_group(i);
      out[i] = Score(requests[i].context, requests[i].continuation);
      first = i + 1;
      continue;
    }
    if (tokens.size() + n > static_cast<size_t>(Session::kMaxBatch)) {
      run_group(i);
      first = i;
    }
    tokens.insert(tokens.end(), inps[i].begin() + static_cast<std::ptrdiff_t>(shared),
                  inps[i].end());
    lengths.push_back(static_cast<int>(n));
  }
  run_group(requests.size());
  return out;
}

}  // namespace elm::eval
