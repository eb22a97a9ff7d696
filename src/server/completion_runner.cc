#include "server/completion_runner.h"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <utility>

#include "generation/speculative.h"
#include "grammar/grammar_constraint.h"
#include "sampling/defaults.h"
#include "sampling/sampler.h"
#include "server/prefix_store.h"
#include "server/step_batcher.h"

namespace elm::server {

namespace {

// The reply length a request asks for: its max_tokens, or the default for this context.
int RequestedTokens(const GenerationParams& params, int context) {
  return params.max_tokens < 0 ? DefaultReplyTokens(context) : params.max_tokens;
}

GenerateOptions OptionsFor(const GenerationParams& params, int prompt_tokens, int context) {
  const int room = std::max(0, context - prompt_tokens);
  GenerateOptions go;
  go.max_new_tokens = std::min(RequestedTokens(params, context), room);
  go.stop_at_eos = !params.ignore_eos;
  go.sampling = params.sampling;
  go.stop = params.stop;
  go.logit_bias = params.logit_bias;
  go.logprobs = params.logprobs;
  go.score_prompt = params.echo && params.logprobs >= 0;
  return go;
}

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
                               const DeltaCallback& on_delta, const SlotRun& run) {
  GenerateOptions go = OptionsFor(params, static_cast<int>(prompt.size()), session.context());
  go.cancelled = cancelled;
  // The prefix cache: keep the longest common prefix, less at least one token to compute the
  // next logits from.
  int keep = 0;
  if (run.held && !go.score_prompt)
    keep = static_cast<int>(SharedPrefixLength(
        *run.held, prompt, std::min(prompt.size() - 1, static_cast<size_t>(session.position()))));
  session.Rewind(keep);
  go.cached_prompt = keep;
  std::optional<StepBatcher::Membership> member;
  const bool speculate = run.speculative && !params.grammar;
  SpeculativeStats spec_before;
  if (speculate) {
    // Its own stream, apart from the sampler's (which draws the first token from the same seed).
    run.speculative->Reseed(AcceptanceSeedFor(params.sampling.seed));
    spec_before = run.speculative->stats();
    go.speculative = run.speculative;
  } else if (run.batcher) {
    member.emplace(*run.batcher);
    go.forward = [b = run.batcher](Session& s, std::span<const int> t, std::vector<float>& l) {
      b->Forward(s, t, l);
    };
  }
  // The rest of the model work (speculative steps, prompt scoring) runs on the stepping thread
  // too, between its steps (server/step_batcher.h).
  if (run.batcher)
    go.compute = [b = run.batcher](const std::function<void()>& work) { b->Exclusive(work); };
  if (run.held) run.held->clear();  // until it holds what the session holds again, below
  Sampler sampler(params.sampling);
  std::optional<GrammarConstraint> constraint;
  if (params.grammar) {
    constraint.emplace(params.grammar, params.vocab ? params.vocab : TokenTrie::FromTokenizer(tok),
                       /*continuation=*/true);
    go.constraint = &*constraint;
  }
  GenerateResult g =
      Generate(session, prompt, go, sampler, TextOutput{&tok, on_delta, /*continuation=*/true});
  if (run.held) {
    // The session holds prompt + ids[0 .. n-2] (or less when cancelled): its first position().
    std::vector<int>& h = *run.held;
    h.assign(prompt.begin(), prompt.end());
    h.insert(h.end(), g.ids.begin(), g.ids.end());
    h.resize(std::min(h.size(), static_cast<size_t>(session.position())));
  }
  CompletionResult res;
  if (speculate) {
    res.speculated = true;
    res.drafted = run.speculative->stats().drafted - spec_before.drafted;
    res.accepted = run.speculative->stats().accepted - spec_before.accepted;
  }
  res.cached_tokens = keep;
  res.prefill_seconds = g.stats.prefill_seconds;
  res.decode_seconds = g.stats.decode_seconds;
  res.prompt_logprobs = std::move(g.prompt_logprobs);
  res.ids = std::move(g.ids);
  res.logprobs = std::move(g.logprobs);
  res.text = std::move(g.text);
  const bool stopped = g.reason == StopReason::kEos || g.reason == StopReason::kStopString ||
                       g.reason == StopReason::kGrammar;
  res.finish_reason = stopped ? "stop" : "length";
  res.stop_detail = g.reason == StopReason::kEos          ? "eos"
                    : g.reason == StopReason::kStopString ? "stop"
                    : g.reason == StopReason::kGrammar    ? "grammar"
                    : g.reason == StopReason::kContextFull ||
                            go.max_new_tokens < RequestedTokens(params, session.context())
                        ? "context"
                        : "length";
  res.cancelled = g.reason == StopReason::kCancelled;
  return res;
}

}  // namespace elm::server
