// libFuzzer target for the HTTP server's request bodies, parsed as the routes do: ParseJsonBody,
// then the first byte picks the route's parser (/v1/completions, /v1/chat/completions,
// /tokenize, /detokenize); chat messages then go through the chat template and text prompts
// through the tokenizer, as the completion runner does. A rejection must be an ApiError (an
// elm::Error the routes turn into a 4xx); anything else aborts (fuzz_util.h).
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_util.h"
#include "generation/chat_template.h"
#include "server/openai_request.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int route = data[0] % 4;
  const std::string body(elm_fuzz::AsText(data + 1, size - 1));
  static const elm::Tokenizer tok = elm::Tokenizer::Default();
  const int vocab = tok.vocab_size();
  elm_fuzz::ExpectOnlyElmErrors([&] {
    const nlohmann::json j = elm::server::ParseJsonBody(body);
    switch (route) {
      case 0: {
        const auto r = elm::server::ParseCompletionRequest(j, vocab);
        for (const auto& p : r.prompts)
          if (p.is_text) (void)tok.Encode(p.text, tok.add_bos());
        break;
      }
      case 1: {
        const auto r = elm::server::ParseChatRequest(j, vocab);
        (void)elm::ApplyChatTemplate(tok, r.messages);
        break;
      }
      case 2:
        (void)elm::server::ParseTokenizeRequest(j);
        break;
      default:
        (void)tok.Decode(elm::server::ParseDetokenizeRequest(j, vocab));
    }
  });
  return 0;
}
