// The data pipeline: NFC, CoreNet's split and filters, packed windows, padded documents, JSONL and
// llm.c shards, the token cache, deterministic shuffling and the loader position.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "base/mmap_file.h"
#include "test_util.h"
#include "text/nfc.h"
#include "tokenizer/tokenizer.h"
#include "train/data_loader.h"
#include "train/dataset.h"
#include "train/text_sources.h"

namespace elm {
namespace train_data_test {
namespace fs = std::filesystem;

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST(TrainNfc, ComposesDecomposesAndReorders) {
  EXPECT_EQ(NfcNormalize("plain ascii"), "plain ascii");
  EXPECT_EQ(NfcNormalize("e\xCC\x81"), "\xC3\xA9");     // e + U+0301 → é
  EXPECT_EQ(NfcNormalize("\xC3\xA9"), "\xC3\xA9");      // already NFC
  EXPECT_EQ(NfcNormalize("\xE2\x84\xAB"), "\xC3\x85");  // U+212B ANGSTROM → Å
  EXPECT_EQ(NfcNormalize("\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB"),
            "\xED\x95\x9C");  // Hangul jamo → 한
  // a + dot below (220) + grave (230) stays; a + grave + dot below reorders, then composes
  // U+1EA1 (ạ) + grave.
  EXPECT_EQ(NfcNormalize("a\xCC\x80\xCC\xA3"), "\xE1\xBA\xA1\xCC\x80");
  EXPECT_EQ(NfcNormalize("\xE0\xA5\x98"), "\xE0\xA4\x95\xE0\xA4\xBC");  // excluded: stays apart
  EXPECT_EQ(NfcNormalize("bad \xFF utf8 e\xCC\x81"), "bad \xFF utf8 e\xCC\x81");  // untouched
}

TEST(TrainText, SplitAndFilterLikeCoreNet) {
  const auto p = SplitDocument("a b c d e", 2);
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0], "a b");
  EXPECT_EQ(p[2], "e");
  EXPECT_EQ(SplitDocument("a  b", 2).size(), 2u);   // "a", "", "b": empty words count
  EXPECT_EQ(FilterLength("Hello,   World!!"), 11);  // "hello world"
  EXPECT_EQ(FilterLength("...  "), 0);
  EXPECT_EQ(FilterLength("caf\xC3\xA9 ok"), 7);  // é is one character
}

TEST(TrainData, PackedWindowsCacheAndShuffle) {
  const std::string dir = test::TempDir("train_data");
  WriteFile(dir + "/a.txt",
            "First Citizen:\nBefore we proceed any further, hear me speak.\n"
            "All:\nSpeak, speak.\n");
  const Tokenizer tok = Tokenizer::Default();
  const auto sources = ResolveSources({{dir + "/a.txt", "text", -1, -1}}, "", "k");
  DatasetOptions o;
  o.seq_len = 4;
  o.cache_dir = dir + "/cache";
  o.verbose = false;
  const auto s = BuildSamples(sources, tok, o);
  std::vector<int> stream = tok.Encode(ReadTextFile(dir + "/a.txt"), false);
  stream.insert(stream.begin(), tok.bos_id());
  stream.push_back(tok.eos_id());
  ASSERT_EQ(s->size(), static_cast<int64_t>((stream.size() - 1) / 4));
  for (int64_t i = 0; i < s->size(); ++i)
    for (int t = 0; t < 5; ++t) EXPECT_EQ(s->sample(i)[t], stream[i * 4 + t]);
  // Second build reads the cache (same contents).
  ASSERT_EQ(std::distance(fs::directory_iterator(o.cache_dir), fs::directory_iterator()), 1);
  const auto again = BuildSamples(sources, tok, o);
  ASSERT_EQ(again->size(), s->size());
  EXPECT_TRUE(std::equal(s->sample(0), s->sample(0) + s->size() * 5, again->sample(0)));

  // Shuffling: deterministic per seed; a loader sought to a position continues identically.
  DataLoader a(s, 3, 42, true, {}), b(s, 3, 42, true, {}), c(s, 3, 43, true, {});
  std::vector<int> ia(12), ta(12), ib(12), tb(12), ic(12), tc(12);
  bool differs = false;
  for (int k = 0; k < 5; ++k) {
    a.Next(ia.data(), ta.data());
    b.Next(ib.data(), tb.data());
    c.Next(ic.data(), tc.data());
    EXPECT_EQ(ia, ib);
    differs |= ia != ic;
  }
  EXPECT_TRUE(differs);
  DataLoader d(s, 3, 42, true, {});
  d.Seek(a.position());
  a.Next(ia.data(), ta.data());
  d.Next(ib.data(), tb.data());
  EXPECT_EQ(ia, ib);
  EXPECT_EQ(ta, tb);
  EXPECT_GT(a.position().epoch, 0);  // 6 batches of 3 wrap around a small set
  fs::remove_all(dir);
}

TEST(TrainData, DocumentsModePadsFiltersAndTruncates) {
  const std::string dir = test::TempDir("train_docs");
  WriteFile(dir + "/d.jsonl",
            "{\"text\": \"one two three four five six seven eight nine ten\"}\n"
            "{\"text\": \"tiny\"}\n"
            "\n"
            "{\"text\": \"alpha beta\", \"other\": 1}\n");
  const Tokenizer tok = Tokenizer::Default();
  const auto sources = ResolveSources({{dir + "/d.jsonl", "text", -1, -1}}, "", "k");
  DatasetOptions o;
  o.seq_len = 6;
  o.packed = false;
  o.min_characters_per_text = 5;  // drops "tiny" (4 filter characters)
  o.min_tokens_per_text = 3;
  o.verbose = false;
  const auto s = BuildSamples(sources, tok, o);
  EXPECT_EQ(s->stats.documents, 3);
  EXPECT_EQ(s->stats.dropped, 1);
  ASSERT_EQ(s->size(), 2);
  // The long document is truncated to T + 1 = 7 tokens, starting with BOS.
  EXPECT_EQ(s->sample(0)[0], tok.bos_id());
  EXPECT_NE(s->sample(0)[6], kPadToken);
  // The short one is [BOS] ids [EOS] then padding.
  const auto ids = tok.Encode("alpha beta", false);
  EXPECT_EQ(s->sample(1)[ids.size() + 1], tok.eos_id());
  EXPECT_EQ(s->sample(1)[6], kPadToken);
  // In a batch, padded inputs get input_pad and padded targets the ignore index.
  DataLoader l(s, 2, 0, false, {0, -100});
  std::vector<int> in(12), tg(12);
  l.Next(in.data(), tg.data());
  EXPECT_EQ(tg[6 + 5], -100);
  EXPECT_EQ(in[6 + 5], 0);
  EXPECT_EQ(tg[6 + static_cast<int>(ids.size())], tok.eos_id());

  WriteFile(dir + "/bad.jsonl", "{\"content\": \"x\"}\n");
  const auto bad = ResolveSources({{dir + "/bad.jsonl", "text", -1, -1}}, "", "k");
  EXPECT_THROW(BuildSamples(bad, tok, o), Error);
  fs::remove_all(dir);
}

TEST(TrainData, TokenShardsAndPatterns) {
  const std::string dir = test::TempDir("train_shards");
  WriteTokenShard(dir + "/s_000.bin", {1, 5, 6, 7, 2, 1, 8, 9, 2});
  WriteTokenShard(dir + "/s_001.bin", {1, 10, 11, 12, 13, 2});
  EXPECT_EQ(ReadTokenShard(dir + "/s_001.bin"), (std::vector<int32_t>{1, 10, 11, 12, 13, 2}));
  const auto sources =
      ResolveSources({{dir + "/s_{file_id:03d}.bin", "text", 0, 2}}, "", "train_data_info");
  ASSERT_EQ(sources.size(), 2u);
  EXPECT_EQ(sources[1].kind, SourceKind::kTokens);
  DatasetOptions o;
  o.seq_len = 4;
  o.verbose = false;
  o.packed = false;  // documents are cut at BOS
  const auto docs = BuildSamples(sources, Tokenizer::Default(), o);
  EXPECT_EQ(docs->size(), 3);
  o.packed = true;
  const auto packed = BuildSamples(sources, Tokenizer::Default(), o);
  EXPECT_EQ(packed->size(), 3);  // 15 tokens → windows at 0, 4, 8
  EXPECT_THROW(ResolveSources({{dir + "/missing.txt", "text", -1, -1}}, "", "k"), Error);
  EXPECT_THROW(ResolveSources({{dir + "/x.parquet", "text", -1, -1}}, "", "k"), Error);
  fs::remove_all(dir);
}

}  // namespace train_data_test
}  // namespace elm
