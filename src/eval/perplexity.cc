#include "eval/perplexity.h"

#include <cmath>
#include <numbers>

#include "base/error.h"
#include "text/py_text.h"

namespace elm::eval {

std::vector<RollingWindow> RollingWindows(std::span<const int> tokens, int prefix_token,
                                          int max_seq_len, int context_len) {
  if (context_len < 1 || context_len > max_seq_len)
    Fail("rolling windows: context_len ", context_len, " must be in [1, ", max_seq_len, "]");
  std::vector<RollingWindow> out;
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) return out;
  const int64_t L = max_seq_len;
  const int64_t pred_len = L - context_len + 1;
  auto slice = [&](int64_t a, int64_t b) {
    return std::vector<int>(tokens.begin() + a, tokens.begin() + b);
  };
  // Disjoint form of a window (ctx, pred): ctx[: len(ctx) - (len(pred) - 1)].
  auto disjoint = [](std::vector<int> ctx, std::vector<int> pred) {
    ctx.resize(ctx.size() - (pred.size() - 1));
    return RollingWindow{std::move(ctx), std::move(pred)};
  };
  // First window: all of its tokens are predicted, from the prefix token.
  const int64_t first = std::min(L, n);
  std::vector<int> ctx0 = {prefix_token};
  const auto head = slice(0, first - 1);
  ctx0.insert(ctx0.end(), head.begin(), head.end());
  out.push_back(disjoint(std::move(ctx0), slice(0, first)));
  int64_t predicted = first;
  while (predicted < n) {
    const int64_t wlen = std::min(n - predicted, pred_len);
    const int64_t end = predicted + wlen;
    // end - L - 1 >= 0 here: a second window exists only when n > L, so predicted >= L.
    out.push_back(disjoint(slice(end - L - 1, end - 1), slice(end - wlen, end)));
    predicted += wlen;
  }
  return out;
}

double PerplexityResult::token_perplexity() const {
  return std::exp(nll_sum / static_cast<double>(scored_tokens));
}
double PerplexityResult::word_perplexity() const {
  return std::exp(nll_sum / static_cast<double>(num_words));
}
double PerplexityResult::byte_perplexity() const {
  return std::exp(nll_sum / static_cast<double>(num_bytes));
}
double PerplexityResult::bits_per_byte() const {
  return nll_sum / static_cast<double>(num_bytes) / std::numbers::ln2;
}

PerplexityResult RollingPerplexity(LoglikelihoodScorer& scorer, const Tokenizer& tok,
                                   std::string_view text, const PerplexityOptions& opt,
                                   const std::function<void(int, int)>& progress) {
  const int L = scorer.max_length();
  const int stride = opt.stride > 0 ? opt.stride : L;
  if (stride > L) Fail("--stride ", stride, " exceeds the context of ", L, " tokens");
  // lm-eval's prefix_token_id: BOS, else EOS.
  const int prefix = tok.bos_id() >= 0 ? tok.bos_id() : tok.eos_id();
  if (prefix < 0) Fail("the tokenizer has neither BOS nor EOS to start the first window");

  PerplexityResult r;
  const std::vector<int> tokens = tok.Encode(text, opt.add_bos);
  if (tokens.empty()) Fail("perplexity: the text has no tokens");
  r.text_tokens = static_cast<int64_t>(tokens.size()) - (opt.add_bos ? 1 : 0);
  r.num_bytes = static_cast<int64_t>(text.size());
  r.num_words = static_cast<int64_t>(text::LmEvalWordCount(text));

  const auto windows = RollingWindows(tokens, prefix, L, L - stride + 1);
  for (size_t i = 0; i < windows.size(); ++i) {
    const auto& w = windows[i];
    const RequestScore s = scorer.Score(w.context, w.continuation);
    WindowScore ws;
    ws.input_ids = ModelInput(w.context, w.continuation, L);
    ws.n_scored = static_cast<int>(w.continuation.size());
    ws.nll = -s.loglikelihood;
    r.nll_sum += ws.nll;
    r.scored_tokens += ws.n_scored;
    r.windows.push_back(std::move(ws));
    if (progress) progress(static_cast<int>(i + 1), static_cast<int>(windows.size()));
  }
  return r;
}

}  // namespace elm::eval
