#include "generation/chat_history.h"

#include <algorithm>
#include <string>

#include "base/error.h"

namespace elm {

ChatFit FitChatToContext(const Tokenizer& tok, std::span<const ChatMessage> messages, int context,
                         int reply_tokens, bool parse_special, const ReplyMemo* replies) {
  if (messages.empty()) Fail("chat: no messages to render");
  const size_t n = messages.size();
  // Every message's tokens after a previous turn; the first kept one is rendered again as the
  // conversation's start (BOS, no leading newline).
  std::vector<size_t> later(n);
  for (size_t i = 0; i < n; ++i)
    later[i] = MessageChatTokens(tok, messages[i], false, parse_special, replies).size();
  std::vector<int> gen_prompt;
  ChatTemplateOptions gp;
  gp.at_start = false;
  AppendChatTokens(tok, {}, gp, gen_prompt);

  std::vector<bool> keep(n, true);
  size_t later_sum = 0;  // sum of `later` over the kept messages
  for (size_t i = 0; i < n; ++i) later_sum += later[i];
  size_t first = 0;  // the first kept message (kept messages are a suffix plus leading systems)
  auto prompt_size = [&] {
    while (!keep[first]) ++first;
    return later_sum - later[first] +
           MessageChatTokens(tok, messages[first], true, parse_special, replies).size() +
           gen_prompt.size();
  };
  auto drop = [&](size_t i) {
    keep[i] = false;
    later_sum -= later[i];
  };
  const auto ctx = static_cast<size_t>(std::max(context, 0));
  const auto want = static_cast<size_t>(std::max(reply_tokens, 0));
  size_t dropped = 0, next = 0;  // next: the oldest message that may still be dropped
  size_t size = prompt_size();
  while (size + want > ctx) {
    while (next + 1 < n && messages[next].role == "system") ++next;
    if (next + 1 >= n) break;  // only system messages and the last one are left
    drop(next++);
    ++dropped;
    // The kept conversation starts with a user turn: an assistant reply whose question went goes
    // too.
    while (next + 1 < n && messages[next].role == "assistant") {
      drop(next++);
      ++dropped;
    }
    size = prompt_size();
  }
  if (size > ctx || (size == ctx && want > 0))
    Fail("the message does not fit the context: the prompt needs ", size,
         " tokens (system prompt and the last message), but the context holds ", ctx,
         " and the reply needs at least 1");

  ChatFit fit;
  for (size_t i = 0; i < n; ++i)
    if (keep[i]) fit.kept.push_back(messages[i]);
  fit.prompt =
      ApplyChatTemplate(tok, fit.kept, /*add_generation_prompt=*/true, parse_special, replies);
  fit.dropped = dropped;
  fit.reply_tokens = static_cast<int>(std::min(want, ctx - fit.prompt.size()));
  return fit;
}

}  // namespace elm
