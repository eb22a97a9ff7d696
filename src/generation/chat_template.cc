#include "generation/chat_template.h"

#include <optional>

#include "base/error.h"

namespace elm {

namespace {
void AppendText(const Tokenizer& tok, const std::string& text, bool parse_special,
                std::vector<int>& out) {
  const auto ids = parse_special ? tok.EncodeWithSpecial(text, false) : tok.Encode(text, false);
  out.insert(out.end(), ids.begin(), ids.end());
}
}  // namespace

void AppendChatTokens(const Tokenizer& tok, std::span<const ChatMessage> messages,
                      const ChatTemplateOptions& opt, std::vector<int>& out) {
  bool first = opt.at_start;
  if (opt.at_start) out.push_back(tok.bos_id());
  for (const auto& m : messages) {
    if (m.role != "system" && m.role != "user" && m.role != "assistant")
      Fail("chat: unknown role '", m.role, "' (expected system, user or assistant)");
    std::optional<std::vector<int>> sampled;
    if (!first && opt.replies && m.role == "assistant") sampled = opt.replies->Find(m.content);
    if (sampled) {  // a reply generated here: its header as the generation prompt wrote it
      AppendText(tok, "\n<|assistant|>\n", false, out);
      out.insert(out.end(), sampled->begin(), sampled->end());
      out.push_back(tok.eos_id());
      continue;
    }
    // Header and content form one text run: it starts after BOS or after the previous "</s>".
    AppendText(tok, std::string(first ? "" : "\n") + "<|" + m.role + "|>\n" + m.content,
               opt.parse_special, out);
    out.push_back(tok.eos_id());
    first = false;
  }
  if (opt.add_generation_prompt)
    AppendText(tok, std::string(first ? "" : "\n") + "<|assistant|>\n", false, out);
}

std::vector<int> MessageChatTokens(const Tokenizer& tok, const ChatMessage& m, bool at_start,
                                   bool parse_special, const ReplyMemo* replies) {
  std::vector<int> out;
  ChatTemplateOptions opt;
  opt.at_start = at_start;
  opt.add_generation_prompt = false;
  opt.parse_special = parse_special;
  opt.replies = replies;
  AppendChatTokens(tok, std::span<const ChatMessage>(&m, 1), opt, out);
  return out;
}

std::vector<int> ApplyChatTemplate(const Tokenizer& tok, std::span<const ChatMessage> messages,
                                   bool add_generation_prompt, bool parse_special,
                                   const ReplyMemo* replies) {
  std::vector<int> out;
  ChatTemplateOptions opt;
  opt.add_generation_prompt = add_generation_prompt;
  opt.parse_special = parse_special;
  opt.replies = replies;
  AppendChatTokens(tok, messages, opt, out);
  return out;
}

}  // namespace elm
