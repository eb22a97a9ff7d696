// Replies fed back as sampled (generation/reply_memo.h, docs/server.md): the memo keeps the most
// recent replies; the chat template writes a remembered assistant message as the generation
// prompt and the sampled tokens, so the previous turn's prompt and reply are a prefix of the next
// turn's prompt; and through the HTTP server a chat's 5th turn computes only its new message.
#include <gtest/gtest.h>
#include <httplib.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "generation/chat_history.h"
#include "generation/chat_template.h"
#include "generation/reply_memo.h"
#include "model/model.h"
#include "server/http_server.h"
#include "server_test_util.h"
#include "tokenizer/tokenizer.h"

namespace elm {
namespace reply_memo_test {

using nlohmann::json;

TEST(ReplyMemo, KeepsTheMostRecentlyUsedReplies) {
  ReplyMemo memo(2);
  memo.Remember("a", {1});
  memo.Remember("b", {2});
  ASSERT_TRUE(memo.Find("a"));  // now the most recent: "b" goes first
  memo.Remember("c", {3});
  EXPECT_EQ(memo.size(), 2u);
  EXPECT_FALSE(memo.Find("b"));
  EXPECT_EQ(*memo.Find("a"), std::vector<int>{1});
  EXPECT_EQ(*memo.Find("c"), std::vector<int>{3});
  memo.Remember("c", {4, 5});  // the same text again: the newer tokens
  EXPECT_EQ(*memo.Find("c"), (std::vector<int>{4, 5}));
  memo.Remember("", {6});  // nothing to look up by
  EXPECT_EQ(memo.size(), 2u);

  ReplyMemo off(0);
  off.Remember("a", {1});
  EXPECT_FALSE(off.Find("a"));
}

TEST(ReplyMemo, TemplateFeedsARememberedReplyAsSampled) {
  const Tokenizer& tok = Tokenizer::Default();
  const std::vector<ChatMessage> turn1 = {{"system", "Be brief."}, {"user", "Name a sea."}};
  const std::vector<int> prompt1 = ApplyChatTemplate(tok, turn1);
  // Sampled tokens that re-encode differently: "▁Bal" "t" "ic" is " Baltic" as text.
  const std::vector<int> sampled = {*tok.TokenId("▁Bal"), *tok.TokenId("t"), *tok.TokenId("ic")};
  const std::string text = " Baltic";
  const std::vector<int> gen = tok.Encode("\n<|assistant|>\n", false);
  std::vector<int> gen_sampled = gen;
  gen_sampled.insert(gen_sampled.end(), sampled.begin(), sampled.end());
  ASSERT_NE(tok.Encode("\n<|assistant|>\n" + text, false), gen_sampled);
  std::vector<ChatMessage> turn2 = turn1;
  turn2.push_back({"assistant", text});
  turn2.push_back({"user", "Another?"});

  ReplyMemo memo(8);
  memo.Remember(text, sampled);
  const std::vector<int> with = ApplyChatTemplate(tok, turn2, true, false, &memo);
  // The previous prompt, the sampled reply and its EOS, then the new message.
  std::vector<int> expect = prompt1;
  expect.insert(expect.end(), sampled.begin(), sampled.end());
  expect.push_back(tok.eos_id());
  const std::vector<int> user = MessageChatTokens(tok, turn2.back(), false, false);
  expect.insert(expect.end(), user.begin(), user.end());
  expect.insert(expect.end(), gen.begin(), gen.end());
  EXPECT_EQ(with, expect);
  // Without the memo the reply is re-encoded from its text (here: different tokens).
  const std::vector<int> without = ApplyChatTemplate(tok, turn2);
  EXPECT_NE(without, with);
  EXPECT_EQ(without.size(),
            with.size() - sampled.size() +
                (tok.Encode("\n<|assistant|>\n" + text, false).size() - gen.size()));
  // Fitting to the context counts the sampled tokens.
  const ChatFit fit = FitChatToContext(tok, turn2, 512, 16, false, &memo);
  EXPECT_EQ(fit.prompt, with);
  EXPECT_EQ(fit.dropped, 0u);
  // Another text, or the reply as the conversation's first message, is encoded as usual.
  const std::vector<ChatMessage> other = {{"user", "Hi"}, {"assistant", " Baltic!"}};
  EXPECT_EQ(ApplyChatTemplate(tok, other, false, false, &memo),
            ApplyChatTemplate(tok, other, false));
  const std::vector<ChatMessage> first = {{"assistant", text}};
  EXPECT_EQ(ApplyChatTemplate(tok, first, false, false, &memo),
            ApplyChatTemplate(tok, first, false));
}

struct Turn {
  std::string text;
  int prompt_tokens = 0;
  double cached = 0;  // prompt tokens taken from the slot's cache
};

Turn Chat(httplib::Client& c, const json& messages) {
  const double before = test::MetricValue(c, "elm_prompt_tokens_cached_total");
  const json req = {{"messages", messages}, {"max_tokens", 4}, {"temperature", 0}};
  auto r = c.Post("/v1/chat/completions", req.dump(), "application/json");
  EXPECT_TRUE(r);
  if (!r) return {};
  EXPECT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  const Turn t{j["choices"][0]["message"]["content"], j["usage"]["prompt_tokens"],
               test::MetricValue(c, "elm_prompt_tokens_cached_total") - before};
  EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], static_cast<int>(t.cached));
  return t;
}

// Five turns of one chat on one slot (short, to fit the tiny model's 128 positions without
// leaving turns out); returns the 5th turn.
Turn FifthTurn(size_t reply_memo, bool stream) {
  static const auto model = Model::Load(std::string(ELM_SOURCE_DIR) + "/models/tiny-random-32k");
  server::ServerOptions opt;
  opt.port = 0;
  opt.parallel = 1;
  opt.reply_memo = reply_memo;
  server::Server srv(model, Tokenizer::Default(), opt);
  srv.Start();
  httplib::Client c("127.0.0.1", srv.port());
  c.set_read_timeout(60, 0);
  json messages = json::array({{{"role", "user"}, {"content", "Hi."}}});
  Turn t;
  for (int turn = 1; turn <= 5; ++turn) {
    if (stream && turn < 5) {  // the reply assembled from the streamed deltas
      const json req = {
          {"messages", messages}, {"max_tokens", 4}, {"temperature", 0}, {"stream", true}};
      auto r = c.Post("/v1/chat/completions", req.dump(), "application/json");
      EXPECT_TRUE(r && r->status == 200);
      if (!r) return {};
      std::string text;
      for (size_t at = r->body.find("data: {"); at != std::string::npos;
           at = r->body.find("data: {", at + 1)) {
        const json e = json::parse(r->body.substr(at + 6, r->body.find("\n\n", at) - at - 6));
        if (e["choices"].size() && e["choices"][0]["delta"].contains("content"))
          text += e["choices"][0]["delta"]["content"].get<std::string>();
      }
      t.text = text;
    } else {
      t = Chat(c, messages);
    }
    messages.push_back({{"role", "assistant"}, {"content", t.text}});
    messages.push_back({{"role", "user"}, {"content", "Go on."}});
  }
  srv.Stop();
  return t;
}

TEST(ReplyMemo, ServerFifthChatTurnComputesOnlyTheNewMessage) {
  const Tokenizer& tok = Tokenizer::Default();
  // What the 5th turn must compute: the 4th reply's last token (sampled, never fed) and its
  // "</s>", the new user message and the generation prompt.
  const size_t fresh = 2 + MessageChatTokens(tok, {"user", "Go on."}, false, false).size() +
                       tok.Encode("\n<|assistant|>\n", false).size();
  for (const bool stream : {false, true}) {
    const Turn with = FifthTurn(256, stream);
    EXPECT_GT(with.prompt_tokens, 60);
    EXPECT_LE(with.prompt_tokens - with.cached, static_cast<double>(fresh))
        << "stream " << stream << ": " << with.cached << " of " << with.prompt_tokens;
  }
  // Off: each reply is re-encoded from its text, so the cache can only match less.
  const Turn without = FifthTurn(0, false);
  EXPECT_GT(without.prompt_tokens, 60);
  EXPECT_GE(without.prompt_tokens - without.cached, 2.0);
}

}  // namespace reply_memo_test
}  // namespace elm
