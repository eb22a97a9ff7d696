// libFuzzer target for the post-training data rows (src/data/chat_dataset.h). Byte 0 picks the
// parser and options, the rest is one JSONL file:
//   bit 0: 0 chat rows ({"messages": ...}), 1 preference rows (prompt/chosen/rejected);
//   bits 1-3: max_length 4 + 8·k; bits 4-5: max_prompt_length 0, 2, 8 or 64;
//   bit 6: parse_special.
// Every accepted file is batched (MakeSftBatch / MakePreferenceBatch) and the batch touched.
// Rejections must be elm::Error (fuzz_util.h).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "data/chat_dataset.h"
#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

namespace {
int64_t Touch(const elm::TokenBatch& b) {
  int64_t sum = 0;
  for (size_t i = 0; i < b.inputs.size(); ++i) sum += b.inputs[i] + b.targets[i];
  return sum;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  const std::string_view body = elm_fuzz::AsText(data + 1, size - 1);
  static const elm::Tokenizer tok = elm::Tokenizer::Default();
  elm_fuzz::ExpectOnlyElmErrors([&] {
    static const int kPrompt[] = {0, 2, 8, 64};
    elm::PosttrainDataOptions opt;
    opt.max_length = 4 + 8 * ((flags >> 1) & 7);
    opt.max_prompt_length = kPrompt[(flags >> 4) & 3];
    opt.parse_special = (flags & 64) != 0;
    const std::string path = elm_fuzz::WriteScratch("rows.jsonl", body);
    volatile int64_t sink = 0;
    if (flags & 1) {
      const auto pairs = elm::ReadPreferenceJsonl(path, tok, opt);
      sink = Touch(elm::MakePreferenceBatch(pairs, tok.eos_id()));
    } else {
      const auto rows = elm::ReadChatJsonl(path, tok, opt);
      sink = Touch(elm::MakeSftBatch(rows, tok.eos_id()));
    }
    (void)sink;
  });
  return 0;
}
