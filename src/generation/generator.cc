#include "generation/generator.h"

#include <chrono>

#include "base/error.h"

namespace elm {

const char* StopReasonName(StopReason r) {
  switch (r) {
    case StopReason::kMaxTokens: return "length";
    case StopReason::kEos: return "eos";
    case StopReason::kStopString: return "stop";
    case StopReason::kContextFull: return "context";
    case StopReason::kCallback: return "cancelled";
  }
  return "?";
}

double GenerateStats::prompt_tokens_per_s() const {
  return prefill_seconds > 0 ? prompt_tokens / prefill_seconds : 0;
}
double GenerateStats::generated_tokens_per_s() const {
  // The first token comes from the prefill logits; decode time covers the rest.
  return decode_seconds > 0 ? (generated_tokens - 1) / decode_seconds : 0;
}

void Feed(Session& session, std::span<const int> ids) {
  if (ids.empty()) return;
  std::vector<float> logits;
  session.Forward(ids, logits);
}

GenerateResult Generate(Session& session, std::span<const int> prompt, const GenerateOptions& opt,
                        Sampler& sampler, const TokenCallback& on_token) {
  using Clock = std::chrono::steady_clock;
  GenerateResult res;
  const int eos = session.model().config().eos_id;
  if (opt.max_new_tokens < 0) Fail("max_new_tokens must be >= 0");
  if (prompt.empty()) Fail("generate: empty prompt");
  if (session.position() + static_cast<int>(prompt.size()) > session.context())
    Fail("the prompt (", prompt.size(), " tokens", session.position() ? " after " : "",
         session.position() ? std::to_string(session.position()) + " in context" : "",
         ") does not fit the context of ", session.context(), " tokens");

  std::vector<int> history(prompt.begin(), prompt.end());
  std::vector<float> logits;
  const auto t0 = Clock::now();
  session.Forward(prompt, logits);
  const auto t1 = Clock::now();
  res.stats.prompt_tokens = static_cast<int>(prompt.size());
  res.stats.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();

  res.reason = StopReason::kMaxTokens;
  for (int i = 0; i < opt.max_new_tokens; ++i) {
    if (i > 0) {
      if (session.position() >= session.context()) {
        res.reason = StopReason::kContextFull;
        break;
      }
      const int last = res.ids.back();
      session.Forward(std::span<const int>(&last, 1), logits);
    }
    const int id = sampler.Sample(logits, history);
    res.ids.push_back(id);
    history.push_back(id);
    StopReason why = StopReason::kCallback;
    if (on_token && !on_token(id, &why)) {
      res.reason = why;
      break;
    }
    if (opt.stop_at_eos && id == eos) {
      res.reason = StopReason::kEos;
      break;
    }
  }
  res.stats.generated_tokens = static_cast<int>(res.ids.size());
  res.stats.decode_seconds = std::chrono::duration<double>(Clock::now() - t1).count();
  return res;
}

}  // namespace elm
