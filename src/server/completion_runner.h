// One completion on one slot, as the OpenAI endpoints need it: the request's parameters mapped
// onto the one decode loop (generation/generator.h) and its result onto finish reasons. It knows
// nothing of HTTP: text and logprobs go to a callback, and a cancel predicate (client gone, server
// stopping) is polled between forward passes.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "generation/generator.h"
#include "model/session.h"
#include "server/openai_request.h"
#include "tokenizer/tokenizer.h"

namespace elm::server {

struct CompletionResult {
  std::vector<TokenLogprob> prompt_logprobs;  // echo + logprobs: prompt tokens 1..n-1
  std::vector<int> ids;                       // generated ids (a final EOS included)
  std::vector<TokenLogprob> logprobs;         // one per generated id when logprobs >= 0
  std::string text;                           // generated text after stop-string handling
  std::string finish_reason = "length";       // "stop" or "length" (OpenAI's two)
  // Why it ended, more precisely (elm's extension, sent as the choice's "stop_detail"): "eos",
  // "stop" (a stop string), "grammar" (a structured reply was complete), "length" (max_tokens) or
  // "context" (the context was full first).
  std::string stop_detail = "length";
  bool cancelled = false;
  int cached_tokens = 0;       // prompt tokens whose KV came from the prefix cache
  double prefill_seconds = 0;  // GenerateStats: the time to the first token's logits
  double decode_seconds = 0;   // and from the first token to the last
  // Speculative decoding (SlotRun::speculative): whether this reply used it, and the tokens its
  // drafter proposed and the model kept.
  bool speculated = false;
  int64_t drafted = 0, accepted = 0;
};

class StepBatcher;

// How a slot runs: both optional.
struct SlotRun {
  // The prefix cache: the tokens the session holds from its last request (SlotScheduler::Lease::
  // held). The longest common prefix with the prompt is kept and only the rest is computed;
  // afterwards it holds what the session holds. Null: the session is reset first.
  std::vector<int>* held = nullptr;
  // Continuous batching: forward passes run as part of the batcher's steps. Null: on this thread.
  StepBatcher* batcher = nullptr;
  // Speculative decoding (generation/speculative.h) with this slot's decoder instead of the
  // batcher; reseeded from the request's seed. A request with a grammar or JSON schema decodes
  // plainly (the constraint masks each sampled token; a speculative step emits several).
  SpeculativeDecoder* speculative = nullptr;
};

// Receives text as it becomes safe to show (complete UTF-8, no part of a stop string), with the
// logprobs of the tokens consumed since the previous call. Returns false to cancel.
using DeltaCallback = TextCallback;

// `prompt` must be non-empty and fit the session's context (the caller checks, to answer 400).
// Without `run.held` the session is reset first; with it, the cached prefix is reused (never for
// echo with logprobs, which scores every prompt token). max_tokens (-1: the
// default reply length, sampling/defaults.h) is clamped to the room left in the context; a reply
// cut by that clamp reports stop_detail "context".
CompletionResult RunCompletion(Session& session, const Tokenizer& tok, std::span<const int> prompt,
                               const GenerationParams& params,
                               const std::function<bool()>& cancelled,
                               const DeltaCallback& on_delta = {}, const SlotRun& run = {});

// The text of one token as it appears inside decoded text ("▁the" -> " the", "<0x0A>" -> "\n").
// A byte token that is not UTF-8 by itself comes back as OpenAI writes it: "bytes:\xNN".
std::string TokenText(const Tokenizer& tok, int id);

}  // namespace elm::server
