// Speculative decoding in elm serve (docs/server.md "Speculative decoding"): greedy replies through
// the HTTP server are the same with a draft model or prompt lookup as without, batched or not;
// a grammar request falls back to plain decoding; /metrics counts drafted and accepted tokens;
// and the flags (--draft-max, a draft model's vocabulary, --cache-ram) are checked at start-up.
#include <gtest/gtest.h>
#include <httplib.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "generation/speculative.h"
#include "model/model.h"
#include "server/http_server.h"
#include "server_test_util.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace elm {
namespace server_speculative_test {

using nlohmann::json;

std::shared_ptr<const Model> Tiny() {
  static const auto model = Model::Load(std::string(ELM_SOURCE_DIR) + "/models/tiny-random-32k");
  return model;
}

std::shared_ptr<const Model> TinyQ4() {
  LoadOptions lo;
  lo.weights = DType::kQ4_0;
  static const auto model =
      Model::Load(std::string(ELM_SOURCE_DIR) + "/models/tiny-random-32k", lo);
  return model;
}

// Every product in f32 (--exact): batched rows then differ from lone ones by summation order
// only (docs/server.md "Exactness").
std::shared_ptr<const Model> TinyExact() {
  LoadOptions lo;
  lo.exact = true;
  static const auto model =
      Model::Load(std::string(ELM_SOURCE_DIR) + "/models/tiny-random-32k", lo);
  return model;
}

enum class Drafting { kNone, kDraftModel, kLookup };

server::ServerOptions Options(Drafting d, bool batching, int parallel = 1) {
  server::ServerOptions opt;
  opt.port = 0;
  opt.parallel = parallel;
  opt.batching = batching;
  opt.draft_max = 4;
  if (d == Drafting::kDraftModel)
    opt.make_drafter = [] {
      return std::make_unique<DraftModelDrafter>(TinyQ4(), *Tiny(), Tiny()->config().max_context);
    };
  if (d == Drafting::kLookup)
    opt.make_drafter = [] { return std::make_unique<PromptLookupDrafter>(2); };
  return opt;
}

json Complete(httplib::Client& c, const json& req) {
  auto r = c.Post("/v1/completions", req.dump(), "application/json");
  EXPECT_TRUE(r);
  if (!r) return json();
  EXPECT_EQ(r->status, 200) << r->body;
  return json::parse(r->body);
}

json Greedy(const std::string& prompt, int max_tokens) {
  return {{"prompt", prompt},
          {"max_tokens", max_tokens},
          {"temperature", 0},
          {"ignore_eos", true},
          {"logprobs", 1}};
}

const std::vector<std::string>& Prompts() {
  static const std::vector<std::string> prompts = {
      "Once upon a time there was",
      "The cat sat on the mat. The cat sat on the mat. The dog sat on the log. The cat sat on",
      "1, 2, 3, 4, 5, 6, 7, 8,"};
  return prompts;
}

// The replies of a server to Prompts(), greedy, one request after another.
std::vector<json> Replies(const server::ServerOptions& opt, double* drafted = nullptr,
                          double* accepted = nullptr, double* speculated = nullptr,
                          std::shared_ptr<const Model> model = Tiny()) {
  server::Server srv(model, Tokenizer::Default(), opt);
  srv.Start();
  httplib::Client c("127.0.0.1", srv.port());
  c.set_read_timeout(60, 0);
  std::vector<json> out;
  for (const std::string& p : Prompts()) out.push_back(Complete(c, Greedy(p, 32)));
  if (drafted) *drafted = test::MetricValue(c, "elm_speculative_drafted_tokens_total");
  if (accepted) *accepted = test::MetricValue(c, "elm_speculative_accepted_tokens_total");
  if (speculated) *speculated = test::MetricValue(c, "elm_speculative_generations_total");
  srv.Stop();
  return out;
}

void ExpectSameReplies(const std::vector<json>& a, const std::vector<json>& b,
                       const std::string& what) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    const json& x = a[i]["choices"][0];
    const json& y = b[i]["choices"][0];
    EXPECT_EQ(x["text"], y["text"]) << what << ", prompt " << i;
    EXPECT_EQ(x["logprobs"]["tokens"], y["logprobs"]["tokens"]) << what << ", prompt " << i;
    EXPECT_EQ(a[i]["usage"]["completion_tokens"], 32) << what;
  }
}

TEST(ServerSpeculative, GreedyRepliesAreThoseOfPlainDecoding) {
  for (const bool batching : {true, false}) {
    SCOPED_TRACE(batching);
    const auto plain = Replies(Options(Drafting::kNone, batching));
    double drafted = 0, accepted = 0, speculated = 0;
    const auto draft =
        Replies(Options(Drafting::kDraftModel, batching), &drafted, &accepted, &speculated);
    ExpectSameReplies(plain, draft, "draft model");
    EXPECT_EQ(speculated, 3);
    EXPECT_GT(drafted, 0);
    EXPECT_GT(accepted, 0);
    EXPECT_LE(accepted, drafted);
    const auto lookup =
        Replies(Options(Drafting::kLookup, batching), &drafted, &accepted, &speculated);
    ExpectSameReplies(plain, lookup, "prompt lookup");
    EXPECT_EQ(speculated, 3);
    EXPECT_GT(drafted, 0);
  }
}

TEST(ServerSpeculative, ConcurrentRequestsBatchAndStillAnswerAsPlainDecoding) {
  const auto plain =
      Replies(Options(Drafting::kNone, true), nullptr, nullptr, nullptr, TinyExact());
  server::Server srv(TinyExact(), Tokenizer::Default(), Options(Drafting::kDraftModel, true, 3));
  srv.Start();
  std::vector<json> out(Prompts().size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < Prompts().size(); ++i)
    threads.emplace_back([&, i] {
      httplib::Client c("127.0.0.1", srv.port());
      c.set_read_timeout(60, 0);
      out[i] = Complete(c, Greedy(Prompts()[i], 32));
    });
  for (auto& t : threads) t.join();
  // Whichever way each went (alone: speculative; beside others: batched), greedy is greedy: the
  // batched rows differ from lone ones by summation order only, and no top-two near-tie of this
  // model is that close.
  ExpectSameReplies(plain, out, "concurrent");
  srv.Stop();
}

TEST(ServerSpeculative, SampledRequestsAreReproducibleAndGrammarsFallBack) {
  server::Server srv(Tiny(), Tokenizer::Default(), Options(Drafting::kDraftModel, true));
  srv.Start();
  httplib::Client c("127.0.0.1", srv.port());
  c.set_read_timeout(60, 0);
  const json sampled = {{"prompt", "Once upon a time"},
                        {"max_tokens", 24},
                        {"temperature", 0.9},
                        {"seed", 1234},
                        {"ignore_eos", true}};
  const json a = Complete(c, sampled), b = Complete(c, sampled);
  EXPECT_EQ(a["choices"][0]["text"], b["choices"][0]["text"]);
  EXPECT_EQ(a["usage"]["completion_tokens"], 24);
  const double before = test::MetricValue(c, "elm_speculative_generations_total");
  EXPECT_EQ(before, 2);
  // A grammar: decoded plainly (no error), so the speculative count stays.
  const json constrained = {{"prompt", "Answer:"},
                            {"max_tokens", 16},
                            {"temperature", 0},
                            {"grammar", "root ::= \"yes\" | \"no\""}};
  const json g = Complete(c, constrained);
  const std::string text = g["choices"][0]["text"];
  EXPECT_TRUE(text == "yes" || text == "no") << text;
  EXPECT_EQ(test::MetricValue(c, "elm_speculative_generations_total"), before);
  srv.Stop();
}

TEST(ServerSpeculative, FlagsAreCheckedAtStartUp) {
  const std::string tiny = std::string(ELM_SOURCE_DIR) + "/models/tiny-random-32k";
  std::string out, err;
  EXPECT_NE(test::RunElm("serve --model " + tiny + " --port 0 --lookup-ngram 2 --draft-max 0", &out,
                         &err),
            0);
  EXPECT_NE(err.find("--draft-max"), std::string::npos) << err;
  EXPECT_NE(test::RunElm("serve --model " + tiny + " --port 0 --draft-model " + test::DataDir() +
                             "/conformance/a_tiny_qknorm_tied",
                         &out, &err),
            0);
  EXPECT_NE(err.find("same vocabulary"), std::string::npos) << err;
  // The prefix store's budget (docs/server.md "Prefix store") is MiB >= 0.
  EXPECT_NE(test::RunElm("serve --model " + tiny + " --port 0 --cache-ram -1", &out, &err), 0);
  EXPECT_NE(err.find("--cache-ram"), std::string::npos) << err;
}

}  // namespace server_speculative_test
}  // namespace elm
