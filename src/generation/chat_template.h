// The OpenELM-Instruct chat format (CoreNet's instruction-tuning recipe, a Zephyr-style template):
//
//   <|system|>\n{system}</s>\n<|user|>\n{user}</s>\n<|assistant|>\n{reply}</s>\n ...
//
// rendered as HF's tokenizer would see it: "</s>" is the EOS token inserted by id, and every text
// run between special tokens is encoded on its own (which is how HF splits added tokens). Role
// headers and message content are plain text: a literal "</s>" typed by a user stays text unless
// the caller asks for special-token parsing.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "generation/reply_memo.h"
#include "tokenizer/tokenizer.h"

namespace elm {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

struct ChatTemplateOptions {
  bool at_start = true;               // beginning of the conversation: BOS, no leading newline
  bool add_generation_prompt = true;  // end with "\n<|assistant|>\n" for the model to answer
  bool parse_special = false;         // parse special tokens written in message content
  // Replies this program generated (generation/reply_memo.h): an assistant message after the
  // first whose content is one of them is written as the generation prompt and the sampled tokens
  // (what the model produced and its KV cache holds), not re-encoded from its text.
  const ReplyMemo* replies = nullptr;
};

// Appends the tokens for `messages` to `out`. With at_start = false the messages continue a
// conversation whose last token was an EOS (the previous turn's end).
void AppendChatTokens(const Tokenizer& tok, std::span<const ChatMessage> messages,
                      const ChatTemplateOptions& opt, std::vector<int>& out);

// One message's tokens, as AppendChatTokens writes it at the start of a conversation (at_start)
// or after a previous turn's "</s>"; no generation prompt.
std::vector<int> MessageChatTokens(const Tokenizer& tok, const ChatMessage& m, bool at_start,
                                   bool parse_special, const ReplyMemo* replies = nullptr);

// The whole conversation, as HF's apply_chat_template(..., tokenize=True) with BOS.
std::vector<int> ApplyChatTemplate(const Tokenizer& tok, std::span<const ChatMessage> messages,
                                   bool add_generation_prompt = true, bool parse_special = false,
                                   const ReplyMemo* replies = nullptr);

}  // namespace elm
