// libFuzzer target for the HF tokenizer.json reader (Tokenizer::FromJson, what FromFile and the
// model folders use). Input: tokenizer.json text, optionally followed by a NUL byte and a
// tokenizer_config.json. An accepted tokenizer then encodes and decodes a few texts and every id,
// which reaches the tables the parser built. Rejections must be elm::Error (fuzz_util.h).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in = elm_fuzz::AsText(data, size);
  const size_t nul = in.find('\0');
  const std::string_view json = in.substr(0, nul);
  const std::string_view config = nul == std::string_view::npos ? "" : in.substr(nul + 1);
  elm_fuzz::ExpectOnlyElmErrors([&] {
    const elm::Tokenizer tok = elm::Tokenizer::FromJson(json, "fuzz/tokenizer.json", config);
    for (const std::string_view text :
         {"Hello world", " a  b\n\tc <s> </s> <unk>", "\xC3\xA9\xE2\x96\x81x", ""}) {
      (void)tok.Decode(tok.Encode(text, tok.add_bos()));
      (void)tok.Decode(tok.EncodeWithSpecial(text, true), false);
    }
    const int n = std::min(tok.vocab_size(), 512);
    std::vector<int> ids;
    elm::StreamDecoder stream(tok);
    for (int id = 0; id < n; ++id) {
      (void)tok.Piece(id);
      (void)tok.IsSpecial(id);
      (void)stream.Push(id);
      ids.push_back(id);
    }
    (void)stream.Flush();
    (void)tok.Decode(ids, false);
    (void)tok.TokenId("<s>");
    (void)tok.bos_id(), (void)tok.eos_id(), (void)tok.unk_id();
  });
  return 0;
}
