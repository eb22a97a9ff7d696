// FitChatToContext (src/generation/chat_history.h): a conversation longer than the context keeps
// its system prompt and last message and loses its oldest turns, so the prompt plus the reply fit.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/error.h"
#include "generation/chat_history.h"
#include "generation/chat_template.h"
#include "sampling/defaults.h"
#include "tokenizer/tokenizer.h"

namespace elm {
namespace chat_history_test {

const Tokenizer& Tok() {
  static const Tokenizer tok = Tokenizer::Default();
  return tok;
}

// system, then `turns` user/assistant pairs, then a last user message.
std::vector<ChatMessage> Conversation(int turns) {
  std::vector<ChatMessage> m = {{"system", "You are a helpful assistant."}};
  for (int t = 0; t < turns; ++t) {
    m.push_back({"user", "Question number " + std::to_string(t) + ": tell me about the sea."});
    m.push_back({"assistant", "Answer number " + std::to_string(t) +
                                  ": the sea is large, deep and full of fish and salt."});
  }
  m.push_back({"user", "And the last question?"});
  return m;
}

TEST(ChatHistory, ConversationThatFitsIsRenderedWhole) {
  const auto msgs = Conversation(2);
  const ChatFit fit = FitChatToContext(Tok(), msgs, 4096, 256);
  EXPECT_EQ(fit.dropped, 0u);
  EXPECT_EQ(fit.prompt, ApplyChatTemplate(Tok(), msgs));
  EXPECT_EQ(fit.kept.size(), msgs.size());
  EXPECT_EQ(fit.reply_tokens, 256);
}

TEST(ChatHistory, OldestTurnsGoFirstKeepingSystemAndLastMessage) {
  const auto msgs = Conversation(10);
  const size_t whole = ApplyChatTemplate(Tok(), msgs).size();
  const int context = static_cast<int>(whole / 2);
  const int reply = 40;
  const ChatFit fit = FitChatToContext(Tok(), msgs, context, reply);
  EXPECT_GT(fit.dropped, 0u);
  EXPECT_EQ(fit.dropped % 2, 0u) << "whole exchanges are dropped";
  EXPECT_LE(fit.prompt.size() + reply, static_cast<size_t>(context));
  EXPECT_EQ(fit.reply_tokens, reply);
  ASSERT_EQ(fit.kept.size() + fit.dropped, msgs.size());
  EXPECT_EQ(fit.kept.front().role, "system");
  EXPECT_EQ(fit.kept.back().content, msgs.back().content);
  EXPECT_EQ(fit.kept[1].role, "user") << "the kept conversation starts with a user turn";
  // The kept turns are the newest ones, in order.
  for (size_t i = 1; i < fit.kept.size(); ++i)
    EXPECT_EQ(fit.kept[i].content, msgs[fit.dropped + i].content);
  EXPECT_EQ(fit.prompt, ApplyChatTemplate(Tok(), fit.kept));
  // Dropping one exchange fewer would not fit: no more is lost than needed.
  std::vector<ChatMessage> more = {msgs[0]};
  more.insert(more.end(), msgs.begin() + static_cast<long>(fit.dropped) - 1, msgs.end());
  EXPECT_GT(ApplyChatTemplate(Tok(), more).size() + reply, static_cast<size_t>(context));
}

TEST(ChatHistory, WithoutSystemPromptTheFirstKeptMessageStartsTheConversation) {
  auto msgs = Conversation(6);
  msgs.erase(msgs.begin());
  const int context = static_cast<int>(ApplyChatTemplate(Tok(), msgs).size() / 2);
  const ChatFit fit = FitChatToContext(Tok(), msgs, context, 10);
  EXPECT_GT(fit.dropped, 0u);
  ASSERT_FALSE(fit.prompt.empty());
  EXPECT_EQ(fit.prompt.front(), Tok().bos_id());
  EXPECT_EQ(fit.prompt, ApplyChatTemplate(Tok(), fit.kept));
  EXPECT_EQ(fit.kept.front().role, "user");
}

TEST(ChatHistory, ReplyShrinksWhenOnlyTheMinimumIsLeftAndTooLongFails) {
  const std::vector<ChatMessage> msgs = {{"system", "Be brief."},
                                         {"user", "one two three four five six seven"}};
  const size_t need = ApplyChatTemplate(Tok(), msgs).size();
  const ChatFit fit = FitChatToContext(Tok(), msgs, static_cast<int>(need + 3), 100);
  EXPECT_EQ(fit.dropped, 0u);
  EXPECT_EQ(fit.reply_tokens, 3);
  try {
    FitChatToContext(Tok(), msgs, static_cast<int>(need), 100);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not fit the context"), std::string::npos)
        << e.what();
  }
}

// The shipped model's case (issue 18): context 256 and the default reply length. Every turn of a
// long chat fits, which the old default (256 = the whole context) made impossible from the second
// message on.
TEST(ChatHistory, DefaultReplyLengthKeepsALongChatGoingInA256Context) {
  const int context = 256;
  const int reply = DefaultReplyTokens(context);
  EXPECT_EQ(reply, 128);
  EXPECT_EQ(DefaultReplyTokens(4096), kDefaultMaxReplyTokens);
  EXPECT_EQ(DefaultReplyTokens(1), 1);
  std::vector<ChatMessage> msgs = {{"system", "You are a poet."}};
  for (int t = 0; t < 8; ++t) {
    msgs.push_back({"user", "Write me a line about turn " + std::to_string(t)});
    const ChatFit fit = FitChatToContext(Tok(), msgs, context, reply);
    EXPECT_LE(fit.prompt.size() + static_cast<size_t>(fit.reply_tokens), 256u);
    EXPECT_EQ(fit.reply_tokens, reply);
    msgs = fit.kept;
    std::string answer;
    for (int w = 0; w < 40; ++w) answer += "word ";
    msgs.push_back({"assistant", answer});
  }
}

}  // namespace chat_history_test
}  // namespace elm
