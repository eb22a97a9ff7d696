// libFuzzer target for the chat template and the prompt text path: messages built from the input
// are rendered by AppendChatTokens with the built-in Llama-2 tokenizer (special tokens parsed or
// not), decoded, and streamed through StreamDecoder, whose output must equal Decode's
// (tokenizer.h promises it for ids of valid UTF-8). Input: byte 0 = options, then messages, each
// a role byte (system, user, assistant or a bad role) and content up to the next NUL.
// Rejections must be elm::Error (fuzz_util.h).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.h"
#include "generation/chat_template.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static const elm::Tokenizer tok = elm::Tokenizer::Default();
  static const char* const kRoles[] = {"system", "user", "assistant", "tool"};
  elm::ChatTemplateOptions opt;
  opt.at_start = (data[0] & 1) != 0;
  opt.add_generation_prompt = (data[0] & 2) != 0;
  opt.parse_special = (data[0] & 4) != 0;
  const bool skip_special = (data[0] & 8) != 0;
  std::vector<elm::ChatMessage> messages;
  std::string_view rest = elm_fuzz::AsText(data + 1, size - 1);
  while (!rest.empty()) {
    const size_t end = rest.find('\0');
    const std::string_view m = rest.substr(0, end);
    rest = end == std::string_view::npos ? "" : rest.substr(end + 1);
    if (m.empty()) continue;
    messages.push_back({kRoles[static_cast<uint8_t>(m[0]) % 4], std::string(m.substr(1))});
  }
  elm_fuzz::ExpectOnlyElmErrors([&] {
    std::vector<int> ids;
    elm::AppendChatTokens(tok, messages, opt, ids);
    const std::string text = tok.Decode(ids, skip_special);
    elm::StreamDecoder stream(tok, skip_special);
    std::string streamed;
    for (int id : ids) streamed += stream.Push(id);
    streamed += stream.Flush();
    if (streamed != text) {
      elm_fuzz::Abort("StreamDecoder gives " + std::to_string(streamed.size()) + " bytes, Decode " +
                      std::to_string(text.size()));
    }
  });
  return 0;
}
