// The one decode loop (src/generation: Generate, TextStreamer, prompt scoring) and the one row
// log-softmax, on the bundled random-weights model with the Llama-2 vocabulary: stop strings that
// span tokens, UTF-8 split across byte tokens, logit bias, logprobs, cancellation, EOS and a full
// context.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "base/error.h"
#include "generation/generator.h"
#include "generation/text_streamer.h"
#include "generation/token_logprobs.h"
#include "kernels/log_softmax.h"
#include "model/model.h"
#include "model/session.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace elm {
namespace generation_test {

std::shared_ptr<const Model> TinyModel() {
  static const auto model = Model::Load(std::string(ELM_SOURCE_DIR) + "/models/tiny-random-32k");
  return model;
}

const Tokenizer& Tok() {
  static const Tokenizer tok = Tokenizer::Default();
  return tok;
}

int ByteToken(unsigned byte) {
  char piece[8];
  std::snprintf(piece, sizeof(piece), "<0x%02X>", byte);
  return Tok().TokenId(piece).value();
}

GenerateOptions Greedy(int max_new_tokens) {
  GenerateOptions go;
  go.max_new_tokens = max_new_tokens;
  go.stop_at_eos = false;
  go.sampling.temperature = 0;
  return go;
}

std::vector<int> Prompt() {
  return Tok().Encode("Once upon a time", Tok().add_bos());
}

struct TextRun {
  GenerateResult result;
  std::string streamed;  // the concatenation of every on_text call
  size_t streamed_logprobs = 0;
  int calls = 0;
};

TextRun GenerateWithText(const GenerateOptions& go, std::vector<int> prompt = Prompt()) {
  Session session(TinyModel());
  Sampler sampler(go.sampling);
  TextRun run;
  const TextCallback on_text = [&](const std::string& text, std::span<const TokenLogprob> lps) {
    run.streamed += text;
    run.streamed_logprobs += lps.size();
    ++run.calls;
    return true;
  };
  run.result = Generate(session, prompt, go, sampler, TextOutput{&Tok(), on_text});
  return run;
}

// ---- Row log-softmax ------------------------------------------------------------------------

TEST(GenerationLogSoftmax, MatchesDefinitionAndFirstArgmax) {
  const std::vector<float> row = {1.0f, 3.0f, -2.0f, 3.0f};
  const RowLogSoftmax lsm(row);
  double z = 0;
  for (float x : row) z += std::exp(static_cast<double>(x));
  for (float x : row) {
    EXPECT_NEAR(lsm.LogProb(x), x - std::log(z), 1e-12);
    EXPECT_NEAR(lsm.ShiftedLogProb(x), x - std::log(z), 1e-12);
  }
  EXPECT_EQ(lsm.argmax(), 1u);
  // Large logits do not overflow: the maximum is taken out first.
  const std::vector<float> big = {1000.0f, 1000.0f};
  EXPECT_NEAR(RowLogSoftmax(big).LogProb(1000.0f), std::log(0.5), 1e-12);
}

TEST(GenerationLogSoftmax, TokenLogprobTopIsBestFirstWithLowerIdOnTies) {
  const std::vector<float> row = {0.5f, 2.0f, 2.0f, -1.0f, 1.0f};
  const TokenLogprob t = LogprobOf(row, 3, 3);
  EXPECT_EQ(t.id, 3);
  EXPECT_EQ(t.logprob, static_cast<float>(RowLogSoftmax(row).LogProb(-1.0f)));
  ASSERT_EQ(t.top.size(), 3u);
  EXPECT_EQ(t.top[0].first, 1);
  EXPECT_EQ(t.top[1].first, 2);
  EXPECT_EQ(t.top[2].first, 4);
  EXPECT_EQ(LogprobOf(row, 1, 1).logprob, LogprobOf(row, 1, 1).top[0].second);
  EXPECT_TRUE(LogprobOf(row, 0, 0).top.empty());
}

// ---- TextStreamer ---------------------------------------------------------------------------

TEST(GenerationTextStreamer, StopStringSpanningTokensIsNeverShown) {
  const std::vector<int> ids = Tok().Encode("Hello world, again", false);
  TextStreamer s(Tok(), {"lo wo"});
  std::string shown;
  bool stopped = false;
  size_t at = 0;
  for (; at < ids.size() && !stopped; ++at) {
    shown += s.Push(ids[at], &stopped);
    EXPECT_EQ(shown.find('l', 3), std::string::npos) << "part of the stop string shown";
  }
  EXPECT_TRUE(stopped);
  EXPECT_EQ(shown, "Hel");
  EXPECT_EQ(Tok().Decode(std::vector<int>(ids.begin(), ids.begin() + at)), "Hello world");
  EXPECT_EQ(s.Push(ids.back(), &stopped), "");  // nothing after a stop
}

TEST(GenerationTextStreamer, HeldBackPrefixIsReleasedWhenItCannotMatch) {
  TextStreamer s(Tok(), {"Hello there"});
  bool stopped = false;
  std::string shown;
  for (int id : Tok().Encode("Hello world", false)) shown += s.Push(id, &stopped);
  EXPECT_FALSE(stopped);
  EXPECT_EQ(shown, "Hello world");
  TextStreamer t(Tok(), {"world!"});
  shown.clear();
  for (int id : Tok().Encode("Hello world", false)) shown += t.Push(id, &stopped);
  EXPECT_EQ(shown, "Hello ");  // "world" could still become the stop string
  EXPECT_EQ(t.Finish(&stopped), "world");
  EXPECT_FALSE(stopped);
}

TEST(GenerationTextStreamer, Utf8SplitAcrossByteTokens) {
  const std::vector<int> euro = {ByteToken(0xE2), ByteToken(0x82), ByteToken(0xAC)};
  TextStreamer s(Tok(), {});
  bool stopped = false;
  EXPECT_EQ(s.Push(euro[0], &stopped), "");
  EXPECT_EQ(s.Push(euro[1], &stopped), "");
  EXPECT_EQ(s.Push(euro[2], &stopped), "\xE2\x82\xAC");
  // An unfinished character comes out as U+FFFD per byte only at the end.
  EXPECT_EQ(s.Push(euro[0], &stopped), "");
  EXPECT_EQ(s.Finish(&stopped), "\xEF\xBF\xBD");
  EXPECT_FALSE(stopped);
  // ... and that end can still complete a stop string.
  TextStreamer f(Tok(), {"\xEF\xBF\xBD"});
  EXPECT_EQ(f.Push(euro[0], &stopped), "");
  EXPECT_EQ(f.Finish(&stopped), "");
  EXPECT_TRUE(stopped);
  // A stop string made of the split character.
  TextStreamer t(Tok(), {"\xE2\x82\xAC"});
  std::string shown = t.Push(Tok().Encode("a", false).back(), &stopped);
  for (int id : euro) shown += t.Push(id, &stopped);
  EXPECT_TRUE(stopped);
  EXPECT_EQ(shown, "a");
}

// ---- Generate -------------------------------------------------------------------------------

TEST(GenerationGenerate, LengthAndStreamedTextEqualsTheDecodedIds) {
  const TextRun run = GenerateWithText(Greedy(12));
  EXPECT_EQ(run.result.reason, StopReason::kMaxTokens);
  ASSERT_EQ(run.result.ids.size(), 12u);
  StreamDecoder d(Tok());
  std::string want;
  for (int id : run.result.ids) want += d.Push(id);
  want += d.Flush();
  EXPECT_EQ(run.result.text, want);
  EXPECT_EQ(run.streamed, want);
  EXPECT_TRUE(run.result.logprobs.empty());
  // Without text output the ids are the same.
  Session session(TinyModel());
  const GenerateOptions go = Greedy(12);
  Sampler sampler(go.sampling);
  const auto ids_only = Generate(session, Prompt(), go, sampler);
  EXPECT_EQ(ids_only.ids, run.result.ids);
  EXPECT_EQ(ids_only.text, "");
}

TEST(GenerationGenerate, StopStringSpanningTokens) {
  const TextRun full = GenerateWithText(Greedy(24));
  // Find a token boundary inside the text and take a stop string across it.
  StreamDecoder d(Tok());
  std::string so_far;
  size_t boundary = 0;
  for (size_t i = 0; i < full.result.ids.size() && boundary == 0; ++i) {
    so_far += d.Push(full.result.ids[i]);
    if (so_far.size() >= 6 && i + 1 < full.result.ids.size()) boundary = so_far.size();
  }
  ASSERT_GT(boundary, 0u);
  ASSERT_GE(full.result.text.size(), boundary + 2) << full.result.text;
  const std::string stop = full.result.text.substr(boundary - 2, 4);
  GenerateOptions go = Greedy(24);
  go.stop = {stop, "never-seen"};
  const TextRun run = GenerateWithText(go);
  EXPECT_EQ(run.result.reason, StopReason::kStopString);
  const std::string want = full.result.text.substr(0, full.result.text.find(stop));
  EXPECT_EQ(run.result.text, want);
  EXPECT_EQ(run.streamed, want);
  EXPECT_LT(run.result.ids.size(), full.result.ids.size());
  EXPECT_EQ(run.result.ids, std::vector<int>(full.result.ids.begin(),
                                             full.result.ids.begin() + static_cast<std::ptrdiff_t>(
                                                                           run.result.ids.size())));
}

TEST(GenerationGenerate, LogitBiasSteersAndLogprobsAreTheModelsOwn) {
  GenerateOptions go = Greedy(4);
  const int forced = Tok().Encode("castle", false).back();
  go.logit_bias = {{forced, 1000.0f}};
  go.logprobs = 3;
  const TextRun run = GenerateWithText(go);
  EXPECT_EQ(run.result.ids, std::vector<int>(4, forced));
  ASSERT_EQ(run.result.logprobs.size(), 4u);
  EXPECT_EQ(run.streamed_logprobs, 4u);  // every logprob went out with some text
  // The reported distribution is the model's before the bias.
  std::vector<int> seq = Prompt();
  seq.insert(seq.end(), run.result.ids.begin(), run.result.ids.end() - 1);
  const std::vector<float> rows = test::AllLogits(TinyModel(), seq);
  const size_t V = static_cast<size_t>(TinyModel()->config().vocab_size);
  for (size_t j = 0; j < 4; ++j) {
    const std::span<const float> row(rows.data() + (Prompt().size() - 1 + j) * V, V);
    const TokenLogprob want = LogprobOf(row, forced, 3);
    const TokenLogprob& got = run.result.logprobs[j];
    EXPECT_EQ(got.id, forced);
    EXPECT_NEAR(got.logprob, want.logprob, 1e-4) << j;
    EXPECT_LT(got.logprob, -1.0f) << "the bias must not be in the reported logprob";
    ASSERT_EQ(got.top.size(), 3u);
    EXPECT_EQ(got.top[0].first, static_cast<int>(RowLogSoftmax(row).argmax())) << j;
  }
  GenerateOptions bad = Greedy(1);
  bad.logit_bias = {{TinyModel()->config().vocab_size, 1.0f}};
  EXPECT_THROW(GenerateWithText(bad), Error);
}

TEST(GenerationGenerate, EosStopsAndIsNotShown) {
  GenerateOptions go = Greedy(8);
  go.stop_at_eos = true;
  go.logprobs = 0;
  const int eos = TinyModel()->config().eos_id;
  go.logit_bias = {{eos, 1000.0f}};
  const TextRun run = GenerateWithText(go);
  EXPECT_EQ(run.result.reason, StopReason::kEos);
  EXPECT_EQ(run.result.ids, std::vector<int>{eos});
  EXPECT_EQ(run.result.text, "");
  // The EOS's logprob still reaches the caller, in a last call without text.
  EXPECT_EQ(run.calls, 1);
  EXPECT_EQ(run.streamed_logprobs, 1u);
  go.stop_at_eos = false;
  EXPECT_EQ(GenerateWithText(go).result.ids.size(), 8u);
}

TEST(GenerationGenerate, CancellationIsPolledBetweenForwardPasses) {
  GenerateOptions go = Greedy(20);
  int polls = 0;
  go.cancelled = [&] { return ++polls > 3; };  // prefill, token 1, token 2, then cancel
  const TextRun run = GenerateWithText(go);
  EXPECT_EQ(run.result.reason, StopReason::kCancelled);
  EXPECT_EQ(run.result.ids.size(), 2u);
  EXPECT_EQ(polls, 4);
  // Cancelled before the prompt: nothing generated.
  go.cancelled = [] { return true; };
  EXPECT_TRUE(GenerateWithText(go).result.ids.empty());
  // The text callback cancels too.
  Session session(TinyModel());
  Sampler sampler(go.sampling);
  go.cancelled = {};
  const TextCallback refuse = [](const std::string&, std::span<const TokenLogprob>) {
    return false;
  };
  const auto r = Generate(session, Prompt(), go, sampler, TextOutput{&Tok(), refuse});
  EXPECT_EQ(r.reason, StopReason::kCancelled);
  EXPECT_LT(r.ids.size(), 20u);
}

TEST(GenerationGenerate, ContextFull) {
  Session session(TinyModel(), 16);
  const GenerateOptions go = Greedy(100);
  Sampler sampler(go.sampling);
  const std::vector<int> prompt = Prompt();
  const auto r = Generate(session, prompt, go, sampler);
  EXPECT_EQ(r.reason, StopReason::kContextFull);
  // The last token is never fed, so one more than the room left is generated.
  EXPECT_EQ(r.ids.size(), 16 - prompt.size() + 1);
  EXPECT_EQ(session.position(), 16);
  EXPECT_THROW(Generate(session, prompt, go, sampler), Error);  // no room for another prompt
}

TEST(GenerationGenerate, PromptScoringMatchesTheFullSequenceLogits) {
  GenerateOptions go = Greedy(1);
  go.logprobs = 2;
  go.score_prompt = true;
  const std::vector<int> prompt = Prompt();
  const TextRun run = GenerateWithText(go, prompt);
  ASSERT_EQ(run.result.prompt_logprobs.size(), prompt.size() - 1);
  const std::vector<float> rows = test::AllLogits(TinyModel(), prompt);
  const size_t V = static_cast<size_t>(TinyModel()->config().vocab_size);
  for (size_t t = 1; t < prompt.size(); ++t) {
    const TokenLogprob want =
        LogprobOf(std::span<const float>(rows.data() + (t - 1) * V, V), prompt[t], 2);
    const TokenLogprob& got = run.result.prompt_logprobs[t - 1];
    EXPECT_EQ(got.id, prompt[t]);
    EXPECT_NEAR(got.logprob, want.logprob, 1e-4) << t;
    ASSERT_EQ(got.top.size(), 2u);
    EXPECT_EQ(got.top[0].first, want.top[0].first) << t;
  }
  // The generated token continues from the last prompt row, as without scoring.
  go.score_prompt = false;
  EXPECT_EQ(GenerateWithText(go, prompt).result.ids, run.result.ids);
}

}  // namespace generation_test
}  // namespace elm
