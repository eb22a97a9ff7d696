#include "server/completion_runner.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "generation/stop_strings.h"
#include "sampling/sampler.h"

namespace elm::server {

namespace {

// Prompt chunk sizes. Scoring needs logits for every row ([T, V] floats), so it goes 64 positions
// at a time to bound that buffer (8 MB at V = 32000); plain prefill only keeps the last row. Both
// give cancellation a chance between chunks of a long prompt.
constexpr int kScoreChunk = 64;
constexpr int kPrefillChunk = 512;

// log-softmax of one row of logits, reporting `id` and the `top` best alternatives.
class RowLogprobs {
 public:
  RowLogprobs(std::span<const float> row, int top) : row_(row) {
    float mx = -INFINITY;
    for (float x : row) mx = std::max(mx, x);
    double sum = 0;
    for (float x : row) sum += std::exp(static_cast<double>(x) - mx);
    log_z_ = mx + std::log(sum);
    // Insertion into a short best-first list; ties keep the lower id (strict comparison), like
    // the samplers' greedy choice.
    for (int i = 0; i < static_cast<int>(row.size()) && top > 0; ++i) {
      const float x = row[i];
      if (static_cast<int>(best_.size()) == top && !(x > row[best_.back()])) continue;
      auto pos = std::find_if(best_.begin(), best_.end(), [&](int b) { return x > row[b]; });
      best_.insert(pos, i);
      if (static_cast<int>(best_.size()) > top) best_.pop_back();
    }
  }
  // The same expression for the chosen token and the alternatives, so a greedy token's logprob
  // equals the top entry exactly (lm-evaluation-harness compares them with ==).
  float LogProb(int id) const { return static_cast<float>(row_[id] - log_z_); }
  TokenLogprob For(int id) const {
    TokenLogprob t;
    t.id = id;
    t.logprob = LogProb(id);
    for (int b : best_) t.top.emplace_back(b, LogProb(b));
    return t;
  }

 private:
  std::span<const float> row_;
  double log_z_ = 0;
  std::vector<int> best_;
};

}  // namespace

std::string TokenText(const Tokenizer& tok, int id) {
  const std::string& piece = tok.Piece(id);
  unsigned byte = 0;
  if (piece.size() == 6 && piece.starts_with("<0x") && piece.back() == '>' &&
      std::sscanf(piece.c_str() + 3, "%2x", &byte) == 1) {
    if (byte < 0x80) return std::string(1, static_cast<char>(byte));
    char buf[32];
    std::snprintf(buf, sizeof(buf), "bytes:\\x%02x", byte);
    return buf;
  }
  if (tok.IsSpecial(id)) return piece;
  std::string out;
  static const std::string kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's space marker
  for (size_t i = 0; i < piece.size();) {
    if (piece.compare(i, kSpace.size(), kSpace) == 0) {
      out.push_back(' ');
      i += kSpace.size();
    } else {
      out.push_back(piece[i++]);
    }
  }
  return out;
}

CompletionResult RunCompletion(Session& session, const Tokenizer& tok, std::span<const int> prompt,
                               const GenerationParams& params,
                               const std::function<bool()>& cancelled,
                               const DeltaCallback& on_delta) {
  CompletionResult res;
  session.Reset();
  const int n = static_cast<int>(prompt.size());
  const int eos = session.model().config().eos_id;
  const int room = std::max(0, session.context() - n);
  const int max_new = params.max_tokens < 0 ? room : std::min(params.max_tokens, room);
  const bool want_logprobs = params.logprobs >= 0;
  const int top = std::max(0, params.logprobs);
  auto stop_now = [&] { return cancelled && cancelled(); };

  // --- Prefill. `logits` ends up holding the distribution of the first new token.
  std::vector<float> logits;
  if (params.echo && want_logprobs) {
    const int V = session.model().config().vocab_size;
    std::vector<float> rows;
    ForwardOptions all_rows;
    all_rows.all_logits = true;
    for (int start = 0; start < n; start += kScoreChunk) {
      if (stop_now()) {
        res.cancelled = true;
        return res;
      }
      const int T = std::min(kScoreChunk, n - start);
      session.Forward(prompt.subspan(start, T), rows, all_rows);
      for (int t = 0; t < T && start + t + 1 < n; ++t) {
        const RowLogprobs lp(std::span<const float>(rows).subspan(static_cast<size_t>(t) * V, V),
                             top);
        res.prompt_logprobs.push_back(lp.For(prompt[start + t + 1]));
      }
      if (start + T == n) logits.assign(rows.end() - V, rows.end());
    }
  } else {
    for (int start = 0; start < n; start += kPrefillChunk) {
      if (stop_now()) {
        res.cancelled = true;
        return res;
      }
      session.Forward(prompt.subspan(start, std::min(kPrefillChunk, n - start)), logits);
    }
  }

  // --- Decode.
  Sampler sampler(params.sampling);
  std::vector<int> history(prompt.begin(), prompt.end());
  StreamDecoder decoder(tok);
  StopStringMatcher stops(params.stop);
  size_t sent_logprobs = 0;  // res.logprobs[0, sent_logprobs) went out with earlier deltas
  // Hands text to the caller; logprobs wait for the next non-empty text unless `final`.
  auto deliver = [&](const std::string& text, bool final) {
    res.text += text;
    if (!on_delta) return true;
    const bool have_lp = sent_logprobs < res.logprobs.size();
    if (text.empty() && !(final && have_lp)) return true;
    const auto lp = std::span<const TokenLogprob>(res.logprobs).subspan(sent_logprobs);
    sent_logprobs = res.logprobs.size();
    return on_delta(text, lp);
  };
  bool stopped_by_string = false;
  for (int i = 0; i < max_new; ++i) {
    if (i > 0) {
      const int last = res.ids.back();
      session.Forward(std::span<const int>(&last, 1), logits);
    }
    if (stop_now()) {
      res.cancelled = true;
      break;
    }
    std::vector<float> raw;  // the model's own distribution, before the sampler edits logits
    if (want_logprobs) raw = logits;
    for (const auto& [id, bias] : params.logit_bias) logits[id] += bias;
    const int id = sampler.Sample(logits, history);
    history.push_back(id);
    res.ids.push_back(id);
    if (want_logprobs) res.logprobs.push_back(RowLogprobs(raw, top).For(id));
    if (id == eos && !params.ignore_eos) {
      res.finish_reason = "stop";
      break;
    }
    bool stopped = false;
    const std::string text = stops.Push(decoder.Push(id), &stopped);
    if (!deliver(text, false)) {
      res.cancelled = true;
      break;
    }
    if (stopped) {
      res.finish_reason = "stop";
      stopped_by_string = true;
      break;
    }
  }
  if (!res.cancelled && !stopped_by_string) {
    bool stopped = false;
    std::string text = stops.Push(decoder.Flush(), &stopped);
    if (stopped)
      res.finish_reason = "stop";
    else
      text += stops.Flush();
    if (!deliver(text, true)) res.cancelled = true;
  }
  return res;
}

}  // namespace elm::server
