// Batching across documents for `elm eval` (docs/evaluation.md "Batching across documents"):
// several documents' loglikelihood requests share each forward pass. Every document in flight
// holds one session of a pool; its shared prefix is prefilled (in chunks) and then its
// requests run as branches of one item (as LoglikelihoodScorer::ScoreAll does for one
// document), and one BatchStep (model/batch_step.h) runs the items of up to `batch_tokens` rows
// of several documents together. Short-context tasks thus run forwards of ~100 rows instead of
// ~20, where the matrix kernels are faster per row. The scores equal LoglikelihoodScorer's
// within docs/numerics.md's tolerance (the kernels' summation order depends on the rows).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "eval/loglikelihood.h"
#include "model/batch_step.h"
#include "model/session.h"

namespace elm::eval {

// `elm eval --batch-tokens`'s default (docs/evaluation.md "Batching across documents").
inline constexpr int kDefaultBatchTokens = 256;

class LoglikelihoodBatcher {
 public:
  // max_length: lm-eval's max_length (0 = the model's max_context_length); batch_tokens: the
  // most rows one forward carries (≥ 1); sessions: the most documents in flight, each holding a
  // KV cache of max_length positions (0 = batch_tokens / 16, at least 2 and at most 8).
  LoglikelihoodBatcher(std::shared_ptr<const Model> model, int max_length, int batch_tokens,
                       int sessions = 0);

  int batch_tokens() const { return batch_tokens_; }
  int max_length() const { return max_length_; }
  int vocab_size() const { return model_->config().vocab_size; }

  // Scores each document's requests (per document: its requests in order, as ScoreAll takes
  // them) and returns the scores in the same layout. A document with a branch longer than
  // batch_tokens is scored alone by a LoglikelihoodScorer. Throws elm::Error for a bad request
  // (CheckedModelInput).
  std::vector<std::vector<RequestScore>> ScoreDocs(
      std::span<const std::vector<LoglikelihoodScorer::Ids>> docs);

  int64_t tokens_forwarded() const {
    return tokens_forwarded_ + (alone_ ? alone_->tokens_forwarded() : 0);
  }
  int64_t tokens_reused() const { return tokens_reused_ + (alone_ ? alone_->tokens_reused() : 0); }
  int64_t forwards() const { return forwards_; }  // BatchStep calls so far
  // Positions of each pool session's KV cache: the longest input so far, at most max_length.
  int session_context() const { return session_context_; }

 private:
  struct Slot {
    std::unique_ptr<Session> session;
    std::vector<int> cached;  // the tokens whose keys/values the session holds
    bool busy = false;
  };
  // The free slot whose cache shares the longest prefix with `prefix` (a new one while the pool
  // is not full and every free one shares nothing); its cache is cut to that prefix. A slot whose
  // session holds fewer than session_context_ positions gets a new session of that size.
  Slot& TakeSlot(std::span<const int> prefix, size_t* lcp);

  std::shared_ptr<const Model> model_;
  int max_length_;
  int batch_tokens_;
  size_t max_sessions_;
  // Positions of the pool's sessions: the longest input scored so far (at most max_length_), so
  // a task of short documents does not hold max_length positions of KV cache per session.
  int session_context_ = 1;
  std::vector<std::unique_ptr<Slot>> slots_;
  BatchStep step_;
  // Documents whose branches do not fit a batch (made at the first such document: its KV cache
  // is another max_length positions).
  std::unique_ptr<LoglikelihoodScorer> alone_;
  int64_t tokens_forwarded_ = 0, tokens_reused_ = 0, forwards_ = 0;
};

}  // namespace elm::eval
