// Fitting a chat into the context, as ollama and llama.cpp's server do: when the conversation's
// prompt plus the room asked for the reply does not fit, the oldest turns are left out. The system
// messages and the last message (the new user turn) are always kept; a dropped user message takes
// the assistant reply that followed it along, so the kept conversation still starts with a user
// turn. Used by `elm chat`, the server's /v1/chat/completions and so the chat page
// (docs/server.md, "Long conversations").
#pragma once

#include <span>
#include <vector>

#include "generation/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace elm {

struct ChatFit {
  std::vector<int> prompt;  // the Instruct template's tokens of the kept messages, ending with the
                            // generation prompt (== ApplyChatTemplate(kept messages))
  std::vector<ChatMessage> kept;  // the messages `prompt` renders, in order
  size_t dropped = 0;             // messages left out (the oldest turns after the system prompt)
  int reply_tokens = 0;  // room left for the reply: the requested length, or less when even the
                         // kept minimum leaves less (then prompt.size() + reply_tokens == context)
};

// Renders `messages` (non-empty) with the Instruct template and the generation prompt, leaving
// out the oldest non-system messages until prompt + reply_tokens <= context. If the system
// messages and the last message alone leave less room than reply_tokens, the reply gets what is
// left. Throws elm::Error when they leave no room for a single reply token (the message alone is
// too long for the context), naming both sizes. `replies`: as ChatTemplateOptions::replies.
ChatFit FitChatToContext(const Tokenizer& tok, std::span<const ChatMessage> messages, int context,
                         int reply_tokens, bool parse_special = false,
                         const ReplyMemo* replies = nullptr);

}  // namespace elm
