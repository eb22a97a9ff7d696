#include "generation/generator.h"

#include <algorithm>
#include <chrono>
#include <iterator>
#include <optional>

#include "base/error.h"
#include "generation/speculative.h"
#include "generation/text_streamer.h"

namespace elm {

const char* StopReasonName(StopReason r) {
  // In the order of the enumerators.
  static constexpr const char* kNames[] = {"length",  "eos",       "stop",
                                           "context", "cancelled", "grammar"};
  const auto i = static_cast<size_t>(r);
  return i < std::size(kNames) ? kNames[i] : "?";
}

double GenerateStats::prompt_tokens_per_s() const {
  return prefill_seconds > 0 ? prompt_tokens / prefill_seconds : 0;
}
double GenerateStats::generated_tokens_per_s() const {
  // The first token comes from the prefill logits; decode time covers the rest.
  // None or one token generated: no decode step was timed (-n 0 must not print a negative rate).
  return decode_seconds > 0 && generated_tokens > 1 ? (generated_tokens - 1) / decode_seconds : 0;
}

void Feed(Session& session, std::span<const int> ids) {
  if (ids.empty()) return;
  std::vector<float> logits;
  session.Forward(ids, logits);
}

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

void CheckRequest(const Session& session, std::span<const int> prompt, const GenerateOptions& opt) {
  if (opt.max_new_tokens < 0) Fail("max_new_tokens must be >= 0");
  if (prompt.empty()) Fail("generate: empty prompt");
  // A speculative step emits the tokens it accepts without the per-token sampling step, where the
  // constraint masks the logits (docs/sampling.md).
  if (opt.constraint && opt.speculative)
    Fail(
        "speculative decoding (--draft-model, --lookup-ngram) does not combine with a grammar or "
        "JSON schema");
  if (opt.speculative && opt.forward)
    Fail("generate: speculative decoding runs its own forward passes, not a forward hook");
  if (opt.cached_prompt != 0 &&
      (opt.cached_prompt < 0 || opt.cached_prompt >= static_cast<int>(prompt.size()) ||
       opt.cached_prompt != session.position() || opt.score_prompt))
    Fail("generate: cached_prompt ", opt.cached_prompt, " does not fit a prompt of ", prompt.size(),
         " tokens with ", session.position(), " in the session");
  const auto fed = prompt.size() - static_cast<size_t>(opt.cached_prompt);
  if (session.position() + static_cast<int>(fed) > session.context())
    Fail("the prompt (", fed, " tokens", session.position() ? " after " : "",
         session.position() ? std::to_string(session.position()) + " in context" : "",
         ") does not fit the context of ", session.context(), " tokens");
  const int V = session.model().config().vocab_size;
  for (const auto& [id, bias] : opt.logit_bias)
    if (id < 0 || id >= V) Fail("logit bias for token id ", id, ", out of range [0, ", V, ")");
}

// One generation's state: the logits of the next position, the ids so far (prompt included, for
// the penalties), the text streamer and what was already handed to the caller.
class DecodeLoop {
 public:
  DecodeLoop(Session& session, const GenerateOptions& opt, Sampler& sampler, const TextOutput& text)
      : session_(session), opt_(opt), sampler_(sampler), on_text_(text.on_text) {
    if (text.tokenizer) streamer_.emplace(*text.tokenizer, opt.stop, text.continuation);
  }

  GenerateResult Run(std::span<const int> prompt) {
    const auto t0 = Clock::now();
    bool fed = false;
    if (opt_.score_prompt)
      Compute([&] {
        fed = ScorePrompt(session_, prompt, Top(), opt_.cancelled, logits_, res_.prompt_logprobs);
      });
    else if (opt_.forward)  // the hook runs the passes where they belong
      fed = Prefill(session_, prompt.subspan(opt_.cached_prompt), opt_.cancelled, logits_,
                    opt_.forward);
    else
      Compute([&] {
        fed = Prefill(session_, prompt.subspan(opt_.cached_prompt), opt_.cancelled, logits_);
      });
    const auto t1 = Clock::now();
    res_.stats.prompt_tokens = static_cast<int>(prompt.size());
    res_.stats.prefill_seconds = Seconds(t0, t1);
    if (!fed) {
      res_.reason = StopReason::kCancelled;
      return std::move(res_);
    }
    history_.assign(prompt.begin(), prompt.end());
    if (opt_.speculative)
      Compute([&] {
        opt_.speculative->Begin(session_.position() - static_cast<int>(prompt.size()), prompt);
      });
    Decode();
    if (opt_.speculative) FinishSpeculation();
    if (res_.reason != StopReason::kCancelled && res_.reason != StopReason::kStopString)
      FinishText();
    res_.stats.generated_tokens = static_cast<int>(res_.ids.size());
    res_.stats.decode_seconds = Seconds(t1, Clock::now());
    return std::move(res_);
  }

 private:
  int Top() const { return std::max(0, opt_.logprobs); }
  void Compute(const std::function<void()>& work) const {
    if (opt_.compute)
      opt_.compute(work);
    else
      work();
  }
  bool Cancelled() const { return opt_.cancelled && opt_.cancelled(); }

  void Decode() {
    const int eos = session_.model().config().eos_id;
    res_.reason = StopReason::kMaxTokens;
    for (int i = 0; i < opt_.max_new_tokens; ++i) {
      if (i > 0 && !FeedLast()) return;
      if (Cancelled()) {
        res_.reason = StopReason::kCancelled;
        return;
      }
      const int id = SampleNext();
      if ((opt_.stop_at_eos || opt_.constraint) && id == eos) {
        res_.reason = StopReason::kEos;
        return;
      }
      if (!StreamToken(id)) return;
      if (opt_.constraint && opt_.constraint->Complete()) {
        res_.reason = StopReason::kGrammar;
        return;
      }
    }
  }

  // Feeds the last sampled id, for the logits of the next; false once the context is full.
  bool FeedLast() {
    if (!queued_.empty()) return true;  // a speculative step already emitted the next token
    if (session_.position() >= session_.context()) {
      res_.reason = StopReason::kContextFull;
      return false;
    }
    if (opt_.speculative) return Speculate();
    const int last = res_.ids.back();
    if (opt_.forward)
      opt_.forward(session_, std::span<const int>(&last, 1), logits_);
    else
      Compute([&] { session_.Forward(std::span<const int>(&last, 1), logits_); });
    return true;
  }

  // The per-sequence sampling step: logit bias, the token constraint's mask, the sampler chain.
  int SampleNext() {
    if (!queued_.empty()) return TakeQueued();
    const bool want_logprobs = opt_.logprobs >= 0;
    if (want_logprobs) raw_ = logits_;  // the model's own distribution, before the sampler's edits
    for (const auto& [id, bias] : opt_.logit_bias) logits_[id] += bias;
    if (opt_.constraint) opt_.constraint->Mask(logits_);
    const int id = sampler_.Sample(logits_, history_);
    if (opt_.constraint && id != session_.model().config().eos_id) opt_.constraint->Accept(id);
    history_.push_back(id);
    res_.ids.push_back(id);
    if (want_logprobs) res_.logprobs.push_back(LogprobOf(raw_, id, Top()));
    return id;
  }

  // One speculative step (generation/speculative.h): its tokens wait in queued_ and are taken
  // one at a time, so stop conditions apply to each as without speculation.
  bool Speculate() {
    const LogitEdit edit = [this](std::span<float> logits, std::span<const int>) {
      for (const auto& [id, bias] : opt_.logit_bias) logits[static_cast<size_t>(id)] += bias;
    };
    const int left = opt_.max_new_tokens - static_cast<int>(res_.ids.size());
    std::vector<int> out;
    Compute([&] {
      opt_.speculative->Step(session_, history_, opt_.sampling, edit, left, out,
                             opt_.logprobs >= 0 ? &raw_ : nullptr);
    });
    queued_.assign(out.begin(), out.end());
    queued_row_ = 0;
    return true;
  }

  int TakeQueued() {
    const int id = queued_.front();
    queued_.erase(queued_.begin());
    history_.push_back(id);
    res_.ids.push_back(id);
    if (opt_.logprobs >= 0) {
      const size_t V = static_cast<size_t>(session_.model().config().vocab_size);
      const std::span<const float> row(raw_.data() + queued_row_ * V, V);
      res_.logprobs.push_back(LogprobOf(row, id, Top()));
    }
    ++queued_row_;
    return id;
  }

  // Tokens a step emitted past a stop were run through the target: it keeps what plain decoding
  // would have fed (everything but the last generated token).
  void FinishSpeculation() {
    session_.Rewind(session_.position() - static_cast<int>(queued_.size()));
    queued_.clear();
    Compute([&] { opt_.speculative->Finish(history_); });
  }

  // Streams the text of `id`; false (with the reason set) once a stop string completed or the
  // caller cancelled.
  bool StreamToken(int id) {
    if (!streamer_) return true;
    bool stopped = false;
    const std::string text = streamer_->Push(id, &stopped);
    if (!Deliver(text, false)) {
      res_.reason = StopReason::kCancelled;
      return false;
    }
    if (stopped) res_.reason = StopReason::kStopString;
    return !stopped;
  }

  void FinishText() {
    if (!streamer_) return;
    bool stopped = false;
    const std::string text = streamer_->Finish(&stopped);
    if (stopped) res_.reason = StopReason::kStopString;
    if (!Deliver(text, true)) res_.reason = StopReason::kCancelled;
  }

  // Hands text to the caller; logprobs wait for the next non-empty text unless `final`.
  bool Deliver(const std::string& text, bool final) {
    res_.text += text;
    if (!on_text_) return true;
    const bool have_logprobs = sent_logprobs_ < res_.logprobs.size();
    if (text.empty() && !(final && have_logprobs)) return true;
    const auto lp = std::span<const TokenLogprob>(res_.logprobs).subspan(sent_logprobs_);
    sent_logprobs_ = res_.logprobs.size();
    return on_text_(text, lp);
  }

  Session& session_;
  const GenerateOptions& opt_;
  Sampler& sampler_;
  const TextCallback& on_text_;
  std::optional<TextStreamer> streamer_;
  GenerateResult res_;
  std::vector<int> history_;
  std::vector<float> logits_, raw_;
  std::vector<int> queued_;  // speculative tokens not yet taken, raw_ rows from queued_row_
  size_t queued_row_ = 0;
  size_t sent_logprobs_ = 0;  // res_.logprobs[0, sent_logprobs_) went out with earlier text
};

}  // namespace

GenerateResult Generate(Session& session, std::span<const int> prompt, const GenerateOptions& opt,
                        Sampler& sampler, const TextOutput& text) {
  CheckRequest(session, prompt, opt);
  return DecodeLoop(session, opt, sampler, text).Run(prompt);
}

}  // namespace elm
