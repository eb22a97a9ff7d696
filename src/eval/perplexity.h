// Perplexity of a text with lm-eval's loglikelihood_rolling semantics (lm_eval/utils.py
// get_rolling_token_windows + make_disjoint_window, HFLM.loglikelihood_rolling): the document's
// tokens are cut into windows of at most max_length predictions; the first window predicts the
// first max_length tokens from the prefix token alone, every later window predicts the next
// `stride` tokens given the (max_length - stride) tokens before them, and the last, partial
// window re-reads earlier tokens so its input is full. With add_bos (the OpenELM recipe) the
// document's own BOS is the first predicted token. See docs/evaluation.md.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "eval/loglikelihood.h"
#include "tokenizer/tokenizer.h"

namespace elm::eval {

// One window after make_disjoint_window: the continuation (the predicted tokens) follows the
// context directly; the scorer then left-truncates context + continuation to max_length + 1.
struct RollingWindow {
  std::vector<int> context, continuation;
};

// get_rolling_token_windows(tokens, prefix_token, max_seq_len, context_len) followed by
// make_disjoint_window. lm-eval uses context_len = 1 (disjoint windows); elm's --stride S is
// context_len = max_seq_len - S + 1, so every prediction after the first window sees at least
// max_seq_len - S earlier tokens.
std::vector<RollingWindow> RollingWindows(std::span<const int> tokens, int prefix_token,
                                          int max_seq_len, int context_len);

struct PerplexityOptions {
  int stride = 0;       // new tokens per window; 0 = max_length (lm-eval)
  bool add_bos = true;  // lm-eval's add_bos_token (the OpenELM recipe)
};

struct WindowScore {
  std::vector<int> input_ids;  // the exact model input
  int n_scored = 0;            // scored positions (always the last ones)
  double nll = 0;
};

struct PerplexityResult {
  std::vector<WindowScore> windows;
  int64_t text_tokens = 0;    // tok(text) without BOS
  int64_t scored_tokens = 0;  // predictions made (text tokens, plus BOS with add_bos)
  int64_t num_bytes = 0;      // UTF-8 bytes of the text
  int64_t num_words = 0;      // len(re.split(r"\s+", text))
  double nll_sum = 0;
  double token_perplexity() const;  // exp(nll_sum / scored_tokens)
  double word_perplexity() const;   // exp(nll_sum / num_words)
  double byte_perplexity() const;   // exp(nll_sum / num_bytes)
  double bits_per_byte() const;     // nll_sum / num_bytes / ln 2
};

// progress(windows_done, windows_total) is called after each window.
PerplexityResult RollingPerplexity(LoglikelihoodScorer& scorer, const Tokenizer& tok,
                                   std::string_view text, const PerplexityOptions& opt,
                                   const std::function<void(int, int)>& progress = {});

}  // namespace elm::eval
