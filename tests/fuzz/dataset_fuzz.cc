// libFuzzer target for the training data readers. The first byte picks what the rest is:
//   0 a plain-text document file, 1 a JSONL file ({"text": ...} per line), 2 an llm.c token shard
//   (.bin) — each tokenized by BuildSamples with the built-in tokenizer, in packed or documents
//   mode (second byte), optionally through the token cache (written, then read back) —
//   3 a token cache file read by SampleSet::FromCache, every sample touched, 4 a gzip-compressed
//   JSONL file (doc.jsonl.gz) and 5 a zstd-compressed text file (doc.txt.zst): the decompression
//   of base/text_stream.h on mutated compressed bytes, then the same tokenization.
// Rejections must be elm::Error (fuzz_util.h).
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string_view>

#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"
#include "train/dataset.h"
#include "train/text_sources.h"

namespace {
int64_t Touch(const elm::SampleSet& s) {
  int64_t sum = 0;
  for (int64_t i = 0; i < s.size(); ++i)
    for (int j = 0; j < s.width(); ++j) sum += s.sample(i)[j];
  return sum;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const int mode = data[0] % 6;
  const uint8_t flags = data[1];
  const std::string_view body = elm_fuzz::AsText(data + 2, size - 2);
  static const elm::Tokenizer tok = elm::Tokenizer::Default();
  elm_fuzz::ExpectOnlyElmErrors([&] {
    if (mode == 3) {
      volatile int64_t sink =
          Touch(*elm::SampleSet::FromCache(elm_fuzz::WriteScratch("c.samples", body)));
      (void)sink;
      return;
    }
    static const char* const kNames[] = {"doc.txt", "doc.jsonl",    "doc.bin",
                                         "",        "doc.jsonl.gz", "doc.txt.zst"};
    static const elm::SourceKind kKinds[] = {elm::SourceKind::kText,   elm::SourceKind::kJsonl,
                                             elm::SourceKind::kTokens, elm::SourceKind::kText,
                                             elm::SourceKind::kJsonl,  elm::SourceKind::kText};
    elm::SourceFile src;
    src.path = elm_fuzz::WriteScratch(kNames[mode], body);
    src.kind = kKinds[mode];
    elm::DatasetOptions opt;
    opt.seq_len = 4 + (flags & 15);
    opt.packed = (flags & 16) == 0;
    opt.nfc = (flags & 32) == 0;
    opt.min_tokens_per_text = (flags & 64) ? 3 : 0;
    opt.min_characters_per_text = (flags & 64) ? 5 : 0;
    opt.document_split_size = 8;
    opt.verbose = false;
    const std::filesystem::path cache = elm_fuzz::ScratchDir() / "cache";
    std::filesystem::remove_all(cache);
    if (flags & 128) opt.cache_dir = cache.string();
    volatile int64_t sink = Touch(*elm::BuildSamples({src}, tok, opt));
    (void)sink;
  });
  return 0;
}
