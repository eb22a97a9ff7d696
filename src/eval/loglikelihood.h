// lm-eval's `loglikelihood` request on elm: `_encode_pair` (trailing-whitespace move, joint
// tokenization split at the context's length, BOS), left truncation to max_length, and
// `_loglikelihood_tokens` scoring (sum of log-softmax log-probs of the continuation tokens and
// is_greedy). The scorer keeps the KV cache of the last input and reuses its longest common
// prefix with the next one, so the choices of a question share one prefill of their context.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/session.h"
#include "tokenizer/tokenizer.h"

namespace elm::eval {

struct EncodedRequest {
  std::string context, continuation;  // after the whitespace move
  std::vector<int> context_ids;       // tok(context), with BOS when add_bos
  std::vector<int> continuation_ids;  // tok(context + continuation)[len(context_ids):]
};

// HFLM._encode_pair (and its empty-context branch: the prefix token as context, the
// continuation tokenized on its own). Throws elm::Error when the continuation has no tokens.
EncodedRequest EncodePair(const Tokenizer& tok, std::string_view context,
                          std::string_view continuation, bool add_bos);

// The model input lm-eval builds: (context + continuation)[-(max_length + 1):][:-1]. Its last
// continuation.size() positions produce the scored rows.
std::vector<int> ModelInput(std::span<const int> context, std::span<const int> continuation,
                            int max_length);

struct RequestScore {
  double loglikelihood = 0;  // f32 log-probs summed in double, like the reference
  bool is_greedy = true;
  std::vector<float> token_logprobs;
};

// log_softmax(row)[id] over the full row, with the max and sum taken in double.
float TokenLogProb(std::span<const float> row, int id, bool* is_argmax);

// Checks a request against max_length and the vocabulary (the ids of its last token are never
// fed, so no forward checks them) and returns ModelInput. Throws elm::Error for an empty
// continuation, one longer than max_length (lm-eval asserts both) or an id out of range.
std::vector<int> CheckedModelInput(std::span<const int> context_ids,
                                   std::span<const int> continuation_ids, int max_length,
                                   int vocab_size);

// Sums the log-probs of `continuation` from the last continuation.size() of the [V] logits rows
// ending at `rows_end`.
RequestScore ScoreContinuationRows(const float* rows_end, std::span<const int> continuation,
                                   size_t vocab_size);

class LoglikelihoodScorer {
 public:
  // max_length: lm-eval's max_length (the context window); 0 = the model's max_context_length.
  LoglikelihoodScorer(std::shared_ptr<const Model> model, int max_length = 0);

  int max_length() const { return max_length_; }
  const Model& model() const { return session_.model(); }

  // Scores one request given as token ids. Throws elm::Error for an empty continuation or one
  // longer than max_length (lm-eval asserts both).
  RequestScore Score(std::span<const int> context_ids, std::span<const int> continuation_ids);
  // Scores a document's requests together (the choices of one question): their shared prefix
  // is fed once, then every request's remaining tokens run as branches of one forward
  // (ForwardOptions::branches), so the weights are read once for all choices instead of once
  // per choice. The same scores as Score() one by one, up to summation order. Falls back to
  // Score() when the requests share nothing or with prefix reuse off.
  struct Ids {
    std::span<const int> context, continuation;
  };
  std::vector<RequestScore> ScoreAll(std::span<const Ids> requests);
  // Off: ScoreAll scores the requests one by one (the baseline of its speed-up).
  void set_branches(bool on) { branches_ = on; }
  // Forgets the cached prefix (e.g. between unrelated documents; never needed for correctness).
  void Reset();
  // Off: one plain forward over each request's whole input, as HFLM does (a baseline for the
  // cache's speed-up and a cross-check of its results).
  void set_prefix_reuse(bool on) { prefix_reuse_ = on; }

  int64_t tokens_forwarded() const { return tokens_forwarded_; }
  int64_t tokens_reused() const { return tokens_reused_; }

 private:
  void Feed(std::span<const int> tokens, bool all_logits);
  // Checks a request and returns lm-eval's model input for it.
  std::vector<int> Input(std::span<const int> context_ids, std::span<const int> continuation_ids);
  // Keeps the cached prefix shared with `inp` up to `limit` tokens; returns its length.
  size_t ReusePrefix(std::span<const int> inp, size_t limit);
  RequestScore ScoreRows(const float* rows_end, std::span<const int> continuation) const;

  Session session_;
  int max_length_;
  bool prefix_reuse_ = true;
  bool branches_ = true;
  std::vector<int> cached_;  // the tokens whose keys/values the session holds, in order
  std::vector<float> logits_;
  int64_t tokens_forwarded_ = 0, tokens_reused_ = 0;
};

}  // namespace elm::eval
