// The decoding loop: prefill the prompt through a Session, then sample token by token from the
// KV cache until a stop condition. Text concerns (detokenizing, stop strings) sit on top, in
// TextStreamer, so this loop works on ids alone.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "model/session.h"
#include "sampling/sampler.h"

namespace elm {

enum class StopReason { kMaxTokens, kEos, kStopString, kContextFull, kCallback };
const char* StopReasonName(StopReason r);

struct GenerateOptions {
  int max_new_tokens = 256;
  bool stop_at_eos = true;
  SamplingParams sampling;
};

struct GenerateStats {
  int prompt_tokens = 0;
  int generated_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;  // from the first sampled token to the last
  double prompt_tokens_per_s() const;
  double generated_tokens_per_s() const;
};

struct GenerateResult {
  std::vector<int> ids;  // generated ids (the EOS that stopped generation is included)
  StopReason reason = StopReason::kMaxTokens;
  GenerateStats stats;
};

// Called for every generated id; return false to stop (reason kCallback, or whatever the callback
// sets through `*stop_reason`).
using TokenCallback = std::function<bool(int id, StopReason* stop_reason)>;

// Feeds `prompt` (non-empty; it continues whatever the session already holds, e.g. a chat) and
// generates. The last generated token is not fed back, so afterwards the session holds
// prompt + ids[0 .. n-2]; a caller that continues must put ids.back() first in its next prompt.
GenerateResult Generate(Session& session, std::span<const int> prompt, const GenerateOptions& opt,
                        Sampler& sampler, const TokenCallback& on_token = {});

// Feeds ids through the session without sampling.
void Feed(Session& session, std::span<const int> ids);

}  // namespace elm
