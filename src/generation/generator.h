// The decoding loop, the one every caller uses (elm generate, elm chat, the server): prefill the
// prompt through a Session, then sample token by token from the KV cache until a stop condition
// (length, EOS, a stop string, a full context, cancellation). It can apply a logit bias, record
// the model's own logprobs of generated (and prompt) tokens, and stream text through a
// TextStreamer that never splits a UTF-8 character nor shows part of a stop string.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "generation/prefill.h"
#include "generation/token_logprobs.h"
#include "model/session.h"
#include "sampling/sampler.h"
#include "sampling/token_constraint.h"
#include "tokenizer/tokenizer.h"

namespace elm {

class SpeculativeDecoder;  // generation/speculative.h

// kGrammar: the token constraint was complete (nothing more could follow).
enum class StopReason { kMaxTokens, kEos, kStopString, kContextFull, kCancelled, kGrammar };
const char* StopReasonName(StopReason r);

// Runs `work` (which may throw) and returns when it is done.
using ComputeFn = std::function<void(const std::function<void()>& work)>;

struct GenerateOptions {
  int max_new_tokens = 256;
  bool stop_at_eos = true;
  SamplingParams sampling;        // for the caller's Sampler; Generate uses the one it is given
  std::vector<std::string> stop;  // stop strings (with text output only)
  std::vector<std::pair<int, float>> logit_bias;  // token id -> added to its logit before sampling
  int logprobs = -1;          // >= 0: record each generated token's logprob and this many others
  bool score_prompt = false;  // also record the logprobs of prompt tokens 1..n-1 (logprobs >= 0)
  CancelPredicate cancelled;  // polled between forward passes; true stops (kCancelled)
  // Set: decode speculatively (generation/speculative.h). The output is the same as without it
  // (greedy) or distributed the same (sampling); it is kept by the caller across calls on the
  // same session. Sampled tokens then come from its random stream after the first.
  SpeculativeDecoder* speculative = nullptr;
  // Restricts each sampled token (a grammar or JSON schema, grammar/grammar_constraint.h); owned
  // by the caller, one per sequence. EOS always ends a constrained reply, and is only allowed where
  // the constraint may end; generation stops (kGrammar) once nothing more can follow.
  TokenConstraint* constraint = nullptr;
  // Runs the prefill and decode forward passes (not prompt scoring); empty: Session::Forward.
  ForwardFn forward;
  // Runs the rest of the model work where the forward passes belong: prompt scoring, speculative
  // steps, and the prefill when there is no forward hook (the server's stepping thread,
  // server/step_batcher.h). Empty: on the calling thread.
  ComputeFn compute;
  // The session already holds prompt[0, cached_prompt) (a reused prefix, docs/server.md "Prefix
  // cache"): only the rest is fed, while the penalties still see the whole prompt. Must be less
  // than the prompt's length and equal the session's position; 0 without score_prompt.
  int cached_prompt = 0;
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
  std::string text;                           // with text output: all text shown
  std::vector<TokenLogprob> logprobs;         // one per generated id when logprobs >= 0
  std::vector<TokenLogprob> prompt_logprobs;  // score_prompt: prompt tokens 1..n-1
  GenerateStats stats;
};

// Receives text as it becomes safe to show, with the logprobs of the tokens consumed since the
// previous call (a last call may carry logprobs and no text). Returns false to cancel.
using TextCallback =
    std::function<bool(const std::string& text, std::span<const TokenLogprob> logprobs)>;

// Text output: generated ids are detokenized with `tokenizer` (null: ids only, no stop strings).
struct TextOutput {
  const Tokenizer* tokenizer = nullptr;
  TextCallback on_text;  // may be empty: the text is still collected in GenerateResult::text
  // The text continues the prompt's: a leading space is kept (" Paris" after "The capital of
  // France is"), so prompt text + generated text is the whole text, as OpenAI's API, vLLM and
  // llama-server return it (the server; docs/server.md). Otherwise the generated ids are decoded
  // as a text of their own, as Tokenizer::Decode (the CLI).
  bool continuation = false;
};

// Feeds `prompt` (non-empty; it continues whatever the session already holds, e.g. a chat) and
// generates. The last generated token is not fed back, so afterwards the session holds
// prompt + ids[0 .. n-2]; a caller that continues must put ids.back() first in its next prompt.
GenerateResult Generate(Session& session, std::span<const int> prompt, const GenerateOptions& opt,
                        Sampler& sampler, const TextOutput& text = {});

// Feeds ids through the session without sampling.
void Feed(Session& session, std::span<const int> ids);

}  // namespace elm
