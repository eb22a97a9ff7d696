// Continuous batching and the prefix cache in the server's slots (server/step_batcher.h,
// server/completion_runner.h, docs/server.md): streams decoding together through one batched
// step get the tokens each gets alone; a slot that reuses a cached prefix computes only the new
// tokens and answers as a fresh slot (the same tokens, logprobs to summation order); and
// GET /metrics is valid Prometheus text.
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "base/error.h"
#include "model/session.h"
#include "sampling/defaults.h"
#include "server/completion_runner.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/step_batcher.h"
#include "tokenizer/tokenizer.h"

namespace elm {
namespace continuous_batching_test {

using nlohmann::json;
using server::CompletionResult;
using server::GenerationParams;
using server::RunCompletion;
using server::SlotRun;
using server::StepBatcher;

std::shared_ptr<const Model> TinyModel() {
  static const auto model = Model::Load(std::string(ELM_SOURCE_DIR) + "/models/tiny-random-32k");
  return model;
}

const Tokenizer& Tok() {
  static const Tokenizer tok = Tokenizer::Default();
  return tok;
}

GenerationParams Params(int max_tokens, float temperature, uint64_t seed, int logprobs = -1) {
  GenerationParams p;
  p.sampling = DefaultSamplingParams();
  p.sampling.temperature = temperature;
  p.sampling.seed = seed;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  p.logprobs = logprobs;
  return p;
}

void ExpectSame(const CompletionResult& a, const CompletionResult& b, const std::string& what) {
  EXPECT_EQ(a.ids, b.ids) << what;
  EXPECT_EQ(a.text, b.text) << what;
  EXPECT_EQ(a.stop_detail, b.stop_detail) << what;
  ASSERT_EQ(a.logprobs.size(), b.logprobs.size()) << what;
  for (size_t i = 0; i < a.logprobs.size(); ++i) {
    EXPECT_EQ(a.logprobs[i].id, b.logprobs[i].id) << what;
    // The rows ran in other groupings (kernels/matmul_fast.cc picks decode or prefill variants
    // by rows), so logprobs agree to summation order (docs/server.md "Exactness").
    EXPECT_NEAR(a.logprobs[i].logprob, b.logprobs[i].logprob,
                1e-4 * std::max(1.0f, std::abs(a.logprobs[i].logprob)))
        << what;
  }
}

struct Case {
  std::string prompt;
  GenerationParams params;
};

std::vector<Case> Cases() {
  std::vector<Case> cs;
  cs.push_back({"The capital of France is", Params(20, 0.0f, 1)});
  cs.push_back({"Once upon a time there was a", Params(14, 0.9f, 7, 3)});
  Case stop{"Tell me a story about a dragon who", Params(30, 0.8f, 11)};
  stop.params.stop = {"e"};
  cs.push_back(stop);
  // A longer prompt: several prefill steps at the small chunk below, while the others decode.
  std::string long_prompt;
  for (int i = 0; i < 12; ++i) long_prompt += "a long prompt that fills several chunks ";
  cs.push_back({long_prompt, Params(9, 0.0f, 3, 0)});
  cs.push_back({"1, 2, 3,", Params(25, 1.1f, 5)});
  return cs;
}

TEST(ContinuousBatching, StreamsInOneStepGetWhatEachGetsAlone) {
  const auto model = TinyModel();
  const auto cases = Cases();
  // Exact products (f32 on widened weights) in both runs: the batched rows then differ from the
  // lone ones by summation order only (~1e-7), not by the activation rounding of the fast bf16
  // products, which on this random model's near-flat distributions moves sampled tokens across
  // the sampler's boundaries (it failed that way under ASan's -O1 build).
  std::vector<CompletionResult> alone;
  for (const Case& c : cases) {
    Session s(model, 512);
    s.set_exact(true);
    alone.push_back(
        RunCompletion(s, Tok(), Tok().Encode(c.prompt, true), c.params, [] { return false; }));
  }
  StepBatcher batcher(model, 0, /*prefill_chunk=*/16);
  std::vector<CompletionResult> batched(cases.size());
  std::vector<std::unique_ptr<Session>> sessions;
  for (size_t i = 0; i < cases.size(); ++i) {
    sessions.push_back(std::make_unique<Session>(model, 512));
    sessions.back()->set_exact(true);
  }
  std::vector<std::thread> threads;
  for (size_t i = 0; i < cases.size(); ++i)
    threads.emplace_back([&, i] {
      SlotRun run;
      run.batcher = &batcher;
      const auto prompt = Tok().Encode(cases[i].prompt, true);
      batched[i] = RunCompletion(
          *sessions[i], Tok(), prompt, cases[i].params, [] { return false; }, {}, run);
    });
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < cases.size(); ++i)
    ExpectSame(alone[i], batched[i], "case " + std::to_string(i));
  const auto st = batcher.stats();
  // They shared steps: fewer steps than sequence-steps.
  EXPECT_GT(st.steps, 0u);
  EXPECT_LT(st.steps, st.sequences);
}

TEST(ContinuousBatching, CancellationAndErrorsLeaveOtherStreamsRunning) {
  const auto model = TinyModel();
  StepBatcher batcher(model, 0, 16);
  Session a(model, 256), b(model, 256);
  SlotRun run;
  run.batcher = &batcher;
  std::atomic<int> steps{0};
  CompletionResult ra, rb;
  std::thread ta([&] {
    ra = RunCompletion(
        a, Tok(), Tok().Encode("Cancel me", true), Params(200, 0.0f, 1),
        [&] { return ++steps > 5; }, {}, run);
  });
  std::thread tb([&] {
    rb = RunCompletion(
        b, Tok(), Tok().Encode("Keep going", true), Params(30, 0.0f, 1), [] { return false; }, {},
        run);
  });
  ta.join();
  tb.join();
  EXPECT_TRUE(ra.cancelled);
  EXPECT_FALSE(rb.cancelled);
  EXPECT_EQ(rb.ids.size(), 30u);
  // Bad input is an error for its caller only.
  std::vector<float> logits;
  const std::vector<int> bad = {model->config().vocab_size};
  EXPECT_THROW(batcher.Forward(a, bad, logits), Error);
}

TEST(ContinuousBatching, ALoneStreamAndOtherWorkRunOnTheSteppingThread) {
  // Every forward pass and every Exclusive job runs on the one stepping thread, never on the
  // caller's: a second thread with OpenMP regions would make libgomp throttle the steps' team
  // (server/step_batcher.h).
  const auto model = TinyModel();
  StepBatcher batcher(model, 0, 16);
  std::vector<std::thread::id> ran;
  const std::function<void()> note = [&] { ran.push_back(std::this_thread::get_id()); };
  batcher.Exclusive(note);
  std::thread other([&] { batcher.Exclusive(note); });
  other.join();
  ASSERT_EQ(ran.size(), 2u);
  EXPECT_NE(ran[0], std::this_thread::get_id());
  EXPECT_EQ(ran[0], ran[1]);
  EXPECT_THROW(batcher.Exclusive([] { Fail("from the work"); }), Error);

  // A stream alone in its steps gets exactly what Session::Forward gives (the same kernels, the
  // same rows), its prompt scored (echo with logprobs) through Exclusive.
  GenerationParams p = Params(12, 0.9f, 5, 2);
  p.echo = true;
  const auto prompt = Tok().Encode("The lighthouse keeper", true);
  Session own(model, 256), stepped(model, 256);
  const CompletionResult a = RunCompletion(own, Tok(), prompt, p, [] { return false; });
  SlotRun run;
  run.batcher = &batcher;
  const CompletionResult b = RunCompletion(
      stepped, Tok(), prompt, p, [] { return false; }, {}, run);
  EXPECT_EQ(a.ids, b.ids);
  ASSERT_EQ(a.logprobs.size(), b.logprobs.size());
  for (size_t i = 0; i < a.logprobs.size(); ++i)
    EXPECT_EQ(a.logprobs[i].logprob, b.logprobs[i].logprob) << i;
  ASSERT_EQ(a.prompt_logprobs.size(), b.prompt_logprobs.size());
  EXPECT_FALSE(a.prompt_logprobs.empty());
  EXPECT_GE(batcher.stats().steps, 11u);
}

TEST(PrefixCache, NextTurnComputesOnlyTheNewTokensAndAnswersTheSame) {
  const auto model = TinyModel();
  for (const bool batched : {false, true}) {
    SCOPED_TRACE(batched);
    StepBatcher batcher(model, 0, 16);
    Session cached(model, 512);
    std::vector<int> held;
    SlotRun run;
    run.held = &held;
    run.batcher = batched ? &batcher : nullptr;
    std::vector<int> conversation = Tok().Encode("User: hello there. Assistant:", true);
    for (int turn = 0; turn < 4; ++turn) {
      const GenerationParams p = Params(8, turn % 2 ? 0.7f : 0.0f, 42 + turn, 2);
      const CompletionResult with = RunCompletion(
          cached, Tok(), conversation, p, [] { return false; }, {}, run);
      Session fresh(model, 512);
      const CompletionResult without =
          RunCompletion(fresh, Tok(), conversation, p, [] { return false; });
      ExpectSame(without, with, "turn " + std::to_string(turn));
      // Turn 0 computes everything; later turns only what follows the previous turn's reply
      // (the reply's last token, never fed back, and the new message).
      const int recomputed = static_cast<int>(conversation.size()) - with.cached_tokens;
      EXPECT_EQ(recomputed, turn == 0 ? static_cast<int>(conversation.size()) : 1 + 6)
          << "turn " << turn;
      // held is what the session holds: the prompt and the reply but its last token.
      EXPECT_EQ(static_cast<int>(held.size()), cached.position());
      conversation.insert(conversation.end(), with.ids.begin(), with.ids.end());
      const std::vector<int> next = {100, 200, 300, 400, 500, 600};  // the next user message
      conversation.insert(conversation.end(), next.begin(), next.end());
    }
    // A prompt that diverges early keeps only the common part.
    std::vector<int> other = conversation;
    other.resize(5);
    other.push_back(7);
    const CompletionResult r = RunCompletion(
        cached, Tok(), other, Params(4, 0.0f, 1), [] { return false; }, {}, run);
    EXPECT_EQ(r.cached_tokens, 5);
    // The same prompt again: all but its last token come from the cache.
    const CompletionResult again = RunCompletion(
        cached, Tok(), other, Params(4, 0.0f, 1), [] { return false; }, {}, run);
    EXPECT_EQ(again.cached_tokens, static_cast<int>(other.size()) - 1);
    EXPECT_EQ(again.ids, r.ids);
  }
}

// Prometheus text exposition format 0.0.4: # HELP / # TYPE lines, then samples
// `name{label="value",...} number`; every sample's family declared once before it; histogram
// buckets cumulative with a +Inf bucket equal to _count.
void ExpectPrometheusText(const std::string& text) {
  static const std::regex kHelp(R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .*)");
  static const std::regex kType(
      R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped))");
  static const std::regex kSample(
      R"re(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*")*)?\})? ([-+]?([0-9.]+([eE][-+]?[0-9]+)?|Inf)|NaN))re");
  std::map<std::string, std::string> types;
  std::map<std::string, double> last_bucket, inf_bucket, counts;
  std::istringstream in(text);
  std::string line;
  int samples = 0;
  ASSERT_FALSE(text.empty());
  ASSERT_EQ(text.back(), '\n');
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, m, kHelp)) continue;
    if (std::regex_match(line, m, kType)) {
      EXPECT_EQ(types.count(m[1]), 0u) << "family declared twice: " << line;
      types[m[1]] = m[2];
      continue;
    }
    ASSERT_TRUE(std::regex_match(line, m, kSample)) << "not a sample line: " << line;
    ++samples;
    std::string name = m[1];
    const double v = m[5] == "+Inf" ? HUGE_VAL : std::stod(m[5]);
    std::string family = name;
    for (const char* suffix : {"_bucket", "_sum", "_count"})
      if (!types.count(family) && name.ends_with(suffix))
        family = name.substr(0, name.size() - std::string(suffix).size());
    ASSERT_TRUE(types.count(family)) << "sample before its # TYPE: " << line;
    if (types[family] == "histogram") {
      if (name.ends_with("_bucket")) {
        EXPECT_GE(v, last_bucket[family]) << "buckets must be cumulative: " << line;
        last_bucket[family] = v;
        if (line.find("le=\"+Inf\"") != std::string::npos) inf_bucket[family] = v;
      } else if (name.ends_with("_count")) {
        counts[family] = v;
      }
    }
  }
  EXPECT_GT(samples, 0);
  for (const auto& [family, n] : counts) EXPECT_EQ(inf_bucket[family], n) << family;
}

TEST(ServerMetrics, RenderIsPrometheusTextAndCounts) {
  server::ServerMetrics m;
  m.RecordGeneration(10, 0, 5, 0.02, 0.04);
  m.RecordGeneration(12, 9, 1, 0.003, 0.0);
  server::MetricsSnapshot snap;
  snap.slots = 2;
  snap.batching = true;
  const std::string text = m.Render(snap);
  ExpectPrometheusText(text);
  EXPECT_NE(text.find("elm_prompt_tokens_total 22\n"), std::string::npos) << text;
  EXPECT_NE(text.find("elm_prompt_tokens_cached_total 9\n"), std::string::npos);
  EXPECT_NE(text.find("elm_prefix_cache_hits_total 1\n"), std::string::npos);
  EXPECT_NE(text.find("elm_prefix_cache_misses_total 1\n"), std::string::npos);
  EXPECT_NE(text.find("elm_time_to_first_token_seconds_count 2\n"), std::string::npos);
  EXPECT_NE(text.find("elm_time_per_output_token_seconds_count 4\n"), std::string::npos);
  EXPECT_NE(text.find("elm_time_per_output_token_seconds_bucket{le=\"0.01\"} 4\n"),
            std::string::npos);
}

TEST(ServerMetrics, EndpointAfterAChatServedFromTheCache) {
  server::ServerOptions opt;
  opt.port = 0;
  opt.parallel = 2;
  server::Server srv(TinyModel(), Tokenizer::Default(), opt);
  srv.Start();
  httplib::Client c("127.0.0.1", srv.port());
  c.set_read_timeout(30, 0);
  json req = {{"messages", {{{"role", "user"}, {"content", "Hello, who are you?"}}}},
              {"max_tokens", 6},
              {"temperature", 0}};
  auto r1 = c.Post("/v1/chat/completions", req.dump(), "application/json");
  ASSERT_TRUE(r1);
  ASSERT_EQ(r1->status, 200) << r1->body;
  const std::string reply = json::parse(r1->body)["choices"][0]["message"]["content"];
  req["messages"].push_back({{"role", "assistant"}, {"content", reply}});
  req["messages"].push_back({{"role", "user"}, {"content", "And then?"}});
  auto r2 = c.Post("/v1/chat/completions", req.dump(), "application/json");
  ASSERT_TRUE(r2);
  ASSERT_EQ(r2->status, 200) << r2->body;
  auto m = c.Get("/metrics");
  ASSERT_TRUE(m);
  ASSERT_EQ(m->status, 200);
  EXPECT_TRUE(m->get_header_value("Content-Type").starts_with("text/plain; version=0.0.4"));
  ExpectPrometheusText(m->body);
  EXPECT_NE(m->body.find("elm_requests_total{outcome=\"completed\"} 2\n"), std::string::npos)
      << m->body;
  EXPECT_NE(m->body.find("elm_prefix_cache_hits_total 1\n"), std::string::npos) << m->body;
  EXPECT_NE(m->body.find("elm_batch_steps_total"), std::string::npos);
  srv.Stop();
}

}  // namespace continuous_batching_test
}  // namespace elm
