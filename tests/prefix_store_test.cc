// The prefix store (server/prefix_store.h, docs/server.md "Prefix store", --cache-ram): a KV
// prefix copied out of one session and into another continues exactly as the original; the
// store keeps within its byte budget, least recently used out first; and through the HTTP server
// a conversation's 5th turn finds its prefix again after other traffic reused the only slot.
#include <gtest/gtest.h>
#include <httplib.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.h"
#include "model/model.h"
#include "model/session.h"
#include "server/http_server.h"
#include "server/prefix_store.h"
#include "server_test_util.h"
#include "tokenizer/tokenizer.h"

namespace elm {
namespace prefix_store_test {

using nlohmann::json;
using server::PrefixStore;

std::shared_ptr<const Model> Tiny() {
  static const auto model = Model::Load(std::string(ELM_SOURCE_DIR) + "/models/tiny-random-32k");
  return model;
}

std::vector<int> Tokens(int n, int first) {
  std::vector<int> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[static_cast<size_t>(i)] = 1 + (first + 7 * i) % 500;
  return t;
}

// A session holding `tokens`.
std::unique_ptr<Session> Holding(const std::vector<int>& tokens, DType kv = DType::kF32) {
  auto s = std::make_unique<Session>(Tiny(), 128, kv);
  std::vector<float> logits;
  s->Forward(tokens, logits);
  return s;
}

TEST(ServerPrefixStore, ACopiedPrefixContinuesAsTheOriginal) {
  for (const DType kv : {DType::kF32, DType::kF16}) {
    const std::vector<int> tokens = Tokens(40, 3);
    auto a = Holding(tokens, kv);
    std::vector<uint8_t> copy;
    a->cache().SavePrefix(40, copy);
    EXPECT_EQ(copy.size(), a->cache().PrefixBytes(40));
    // The first 25 positions into a fresh session, then one more token in both.
    Session b(Tiny(), 64, kv);
    b.LoadPrefix(copy, 40, 25);
    EXPECT_EQ(b.position(), 25);
    a->Rewind(25);
    std::vector<float> la, lb;
    const int next = 77;
    a->Forward(std::span<const int>(&next, 1), la);
    b.Forward(std::span<const int>(&next, 1), lb);
    EXPECT_EQ(la, lb);
    EXPECT_THROW(b.LoadPrefix(copy, 40, 41), Error);
    EXPECT_THROW(b.LoadPrefix(std::span<const uint8_t>(copy).first(10), 40, 5), Error);
  }
}

TEST(ServerPrefixStore, KeepsWithinItsBudgetLeastRecentlyUsedOutFirst) {
  const auto a = Tokens(30, 1), b = Tokens(30, 2), c = Tokens(30, 3);
  auto sa = Holding(a), sb = Holding(b), sc = Holding(c);
  const size_t entry = sa->cache().PrefixBytes(30);
  PrefixStore store(entry * 5 / 2);  // room for two entries
  store.Save(*sa, a);
  store.Save(*sb, b);
  EXPECT_EQ(store.stats().entries, 2u);
  EXPECT_EQ(store.stats().bytes, 2 * entry);
  // a is used (restored into a session), so b is now the least recently used.
  Session s(Tiny(), 128);
  std::vector<int> held;
  std::vector<int> prompt = a;
  prompt.push_back(9);
  EXPECT_EQ(store.Restore(s, prompt, prompt.size() - 1, 0, held), 30u);
  EXPECT_EQ(held, a);
  EXPECT_EQ(s.position(), 30);
  store.Save(*sc, c);
  const auto st = store.stats();
  EXPECT_EQ(st.entries, 2u);
  EXPECT_LE(st.bytes, st.budget);
  EXPECT_EQ(st.evictions, 1u);
  EXPECT_EQ(store.Match(a, 100), 30u);
  EXPECT_EQ(store.Match(b, 100), 0u);  // b left
  EXPECT_EQ(store.Match(c, 100), 30u);
  // Only a prefix longer than what the slot already has is restored, and at most `limit`.
  EXPECT_EQ(store.Restore(s, prompt, prompt.size() - 1, 30, held), 0u);
  EXPECT_EQ(store.Restore(s, prompt, 12, 0, held), 12u);
  EXPECT_EQ(s.position(), 12);
  EXPECT_EQ(held.size(), 12u);
  // An entry extending a stored one replaces it; one already covered is not stored twice.
  std::vector<int> longer = a;
  longer.insert(longer.end(), {5, 6, 7});
  auto sl = Holding(longer);
  store.Save(*sl, longer);
  store.Save(*sa, a);
  EXPECT_EQ(store.stats().entries, 2u);
  EXPECT_EQ(store.Match(longer, 100), 33u);
  // Larger than the whole budget: not stored.
  PrefixStore tiny(entry / 2);
  tiny.Save(*sa, a);
  EXPECT_EQ(tiny.stats().entries, 0u);
}

struct Turn {
  std::string text;
  int prompt_tokens = 0, completion_tokens = 0;
};

Turn Complete(httplib::Client& c, const std::string& prompt) {
  const json req = {
      {"prompt", prompt}, {"max_tokens", 8}, {"temperature", 0}, {"ignore_eos", true}};
  auto r = c.Post("/v1/completions", req.dump(), "application/json");
  EXPECT_TRUE(r);
  if (!r) return {};
  EXPECT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  return {j["choices"][0]["text"], j["usage"]["prompt_tokens"], j["usage"]["completion_tokens"]};
}

struct FifthTurn {
  Turn reply;
  double cached = 0;  // prompt tokens it took from a cache
  double store_hits = 0, evictions = 0;
  int conversation_tokens = 0, other_tokens = 0;  // what the slot held before the other traffic
};

// Four turns of one conversation on the only slot, three unrelated requests, then the 5th turn.
FifthTurn RunConversation(size_t cache_ram_bytes) {
  server::ServerOptions opt;
  opt.port = 0;
  opt.parallel = 1;
  opt.cache_ram_bytes = cache_ram_bytes;
  server::Server srv(Tiny(), Tokenizer::Default(), opt);
  srv.Start();
  httplib::Client c("127.0.0.1", srv.port());
  c.set_read_timeout(60, 0);
  FifthTurn f;
  std::string conversation = "User: tell me about the sea. Assistant:";
  for (int turn = 1; turn <= 4; ++turn) {
    const Turn t = Complete(c, conversation);
    f.conversation_tokens = t.prompt_tokens + t.completion_tokens;
    conversation += t.text + " User: and then? Assistant:";
  }
  for (int other = 0; other < 3; ++other) {
    const Turn t = Complete(c, "Something else entirely, number " + std::to_string(other) +
                                   ": a list of rivers, mountains, cities and their many names");
    f.other_tokens = t.prompt_tokens + t.completion_tokens;
  }
  const double cached_before = test::MetricValue(c, "elm_prompt_tokens_cached_total");
  f.reply = Complete(c, conversation);
  f.cached = test::MetricValue(c, "elm_prompt_tokens_cached_total") - cached_before;
  f.store_hits = test::MetricValue(c, "elm_prefix_store_hits_total");
  f.evictions = test::MetricValue(c, "elm_prefix_store_evictions_total");
  srv.Stop();
  return f;
}

TEST(ServerPrefixStore, FifthTurnAfterOtherTrafficFindsItsPrefix) {
  const FifthTurn with = RunConversation(size_t{64} << 20);
  const FifthTurn without = RunConversation(0);
  EXPECT_EQ(with.reply.text, without.reply.text);
  EXPECT_EQ(with.store_hits, 1);
  // Most of the 5th turn's prompt came from the store: the conversation up to the 4th reply.
  EXPECT_GT(with.cached, 0.8 * with.conversation_tokens) << with.cached;
  EXPECT_LT(without.cached, 4);       // only what the other traffic's prompt shares (BOS, "S")
  EXPECT_EQ(without.store_hits, -1);  // no store, no metric

  // A budget of less than the conversation and one other request: the other traffic evicts the
  // conversation (least recently used), and the 5th turn computes its prompt again.
  const size_t per_token = Session(Tiny(), 8).cache().PrefixBytes(1);
  const int room = with.conversation_tokens + with.other_tokens / 2;
  const FifthTurn small = RunConversation(per_token * static_cast<size_t>(room));
  ASSERT_GT(room, with.conversation_tokens);
  EXPECT_EQ(small.store_hits, 0);
  EXPECT_GE(small.evictions, 1);
  EXPECT_LT(small.cached, 4);
  EXPECT_EQ(small.reply.text, without.reply.text);
}

}  // namespace prefix_store_test
}  // namespace elm
