// Feeding a prompt before decoding, in chunks so that a cancel predicate is polled between
// forward passes of a long prompt; optionally scoring every prompt token (echo + logprobs).
#pragma once

#include <functional>
#include <span>
#include <vector>

#include "generation/token_logprobs.h"
#include "model/session.h"

namespace elm {

using CancelPredicate = std::function<bool()>;

// Runs `tokens` through `session` and leaves the last row's logits in `logits`, as
// Session::Forward does; the server's continuous batching runs it as part of a batched step
// (server/step_batcher.h). Empty: Session::Forward.
using ForwardFn =
    std::function<void(Session& session, std::span<const int> tokens, std::vector<float>& logits)>;

// Feeds `prompt` (non-empty); `logits` ends up holding the last position's row. Returns false,
// having fed only part of the prompt, if `cancelled` (may be empty) returned true first.
bool Prefill(Session& session, std::span<const int> prompt, const CancelPredicate& cancelled,
             std::vector<float>& logits, const ForwardFn& forward = {});

// Prefill that also appends to `scores` the logprob of each prompt token after the first (with
// `top` alternatives), under the model's distribution at the position before it.
bool ScorePrompt(Session& session, std::span<const int> prompt, int top,
                 const CancelPredicate& cancelled, std::vector<float>& logits,
                 std::vector<TokenLogprob>& scores);

}  // namespace elm
