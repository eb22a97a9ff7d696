// Compressed training data (base/text_stream.h, docs/training.md "Compressed data"): gzip and
// zstd streams read line by line across chunk boundaries, concatenated gzip members, clear errors
// naming the file for truncated or corrupt streams and for a name that lies; the training sources
// accept .jsonl.gz/.json.gz/.txt.zst and give the same samples as the plain file, sharded over
// ranks the same way; parquet is refused with the conversion command. Fixtures: tests/data/
// compressed (made with gzip -9 -n and zstd -19).
#include <gtest/gtest.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/mmap_file.h"
#include "base/text_stream.h"
#include "data/chat_dataset.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "train/data_loader.h"
#include "train/dataset.h"
#include "train/text_sources.h"

namespace elm {
namespace train_compressed_data_test {
namespace fs = std::filesystem;

std::string Fixture(const std::string& name) {
  return test::DataDir() + "/compressed/" + name;
}

// The 40 lines docs.jsonl.* hold.
std::vector<std::string> ExpectedLines() {
  std::vector<std::string> v;
  for (int i = 0; i < 40; ++i)
    v.push_back("{\"text\": \"Document " + std::to_string(i) +
                ": to be, or not to be, that is the question; line " + std::to_string(i) +
                " of the compressed fixture.\"}");
  return v;
}

std::vector<std::string> Lines(TextStream& s) {
  std::vector<std::string> v;
  std::string line;
  while (s.ReadLine(line)) v.push_back(line);
  return v;
}

std::string Gzip(const std::string& text) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, text.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  z.avail_in = static_cast<uInt>(text.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::string Zstd(const std::string& text) {
  std::string out(ZSTD_compressBound(text.size()), '\0');
  const size_t n = ZSTD_compress(out.data(), out.size(), text.data(), text.size(), 3);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

void ExpectErrorMentions(const std::function<void()>& f, const std::vector<std::string>& words) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    for (const std::string& w : words)
      EXPECT_NE(std::string(e.what()).find(w), std::string::npos)
          << "'" << w << "' not in: " << e.what();
  }
}

TEST(CompressedData, ReadsGzipZstdAndConcatenatedMembers) {
  for (const char* name : {"docs.jsonl.gz", "docs.jsonl.zst", "docs_two_members.jsonl.gz"}) {
    TextStream s(Fixture(name));
    EXPECT_NE(s.compression(), StreamCompression::kNone) << name;
    EXPECT_EQ(Lines(s), ExpectedLines()) << name;
  }
  EXPECT_EQ(ReadTextStreamFile(Fixture("speech.txt.zst")),
            "To be, or not to be, that is the question:\nWhether tis nobler in the mind to "
            "suffer\n");
}

TEST(CompressedData, LinesSurviveChunkBoundaries) {
  std::string text;
  std::vector<std::string> want;
  for (int i = 0; i < 20000; ++i) {  // ~600 kB: many 64 kB chunks, lines split across them
    want.push_back(std::string(static_cast<size_t>(i % 53), 'a' + static_cast<char>(i % 26)) +
                   std::to_string(i));
    text += want.back() + "\n";
  }
  want.push_back("no newline at the end");
  text += want.back();
  for (const std::string& packed : {Gzip(text), Zstd(text), text}) {
    TextStream s(packed, "mem");
    EXPECT_EQ(Lines(s), want);
    TextStream all(packed, "mem");
    EXPECT_EQ(all.ReadAll(), text);
  }
  TextStream empty(std::string_view(), "empty.txt");
  std::string line;
  EXPECT_FALSE(empty.ReadLine(line));
}

TEST(CompressedData, TruncatedOrCorruptStreamsNameTheFile) {
  for (const char* name : {"truncated.jsonl.gz", "truncated.jsonl.zst"})
    ExpectErrorMentions(
        [&] {
          TextStream s(Fixture(name));
          Lines(s);
        },
        {name, "truncated"});
  for (const char* name : {"corrupt.jsonl.gz", "corrupt.jsonl.zst"})
    ExpectErrorMentions(
        [&] {
          TextStream s(Fixture(name));
          Lines(s);
        },
        {name, "corrupt"});
  ExpectErrorMentions([&] { TextStream s(Fixture("plain_named.jsonl.gz")); },
                      {"plain_named.jsonl.gz", "gzip", "magic"});
  ExpectErrorMentions([&] { TextStream s(Fixture("missing.jsonl.gz")); },
                      {"missing.jsonl.gz", "cannot open"});
  // Truncated in memory at every eighth length: never a crash, always a clear error.
  const std::string gz = Gzip(std::string(5000, 'x') + "\n"), zs = Zstd(std::string(5000, 'y'));
  for (const std::string* full : {&gz, &zs})
    for (size_t n = 4; n < full->size(); n += 8) {
      EXPECT_THROW(TextStream(std::string_view(*full).substr(0, n), "cut").ReadAll(), Error) << n;
    }
}

TEST(CompressedData, TrainingSourcesReadCompressedFiles) {
  const std::string key = "dataset.language_modeling.general_lm.train_data_info";
  const auto kinds = [&](const std::string& file) {
    DataSourceInfo info;
    info.file_name = file;
    return ResolveSources({info}, "", key).at(0).kind;
  };
  EXPECT_EQ(kinds(Fixture("docs.jsonl.gz")), SourceKind::kJsonl);
  EXPECT_EQ(kinds(Fixture("docs.jsonl.zst")), SourceKind::kJsonl);
  EXPECT_EQ(kinds(Fixture("speech.txt.zst")), SourceKind::kText);
  ExpectErrorMentions([&] { kinds("shard-00000.parquet"); }, {key, "parquet", "read_parquet"});
  ExpectErrorMentions([&] { kinds("tokens.bin.gz"); }, {key, "decompress"});

  // The same samples as the plain file.
  const std::string dir = test::TempDir("compressed_data");
  std::string plain_text;
  for (const std::string& l : ExpectedLines()) plain_text += l + "\n";
  const std::string plain = dir + "/docs.jsonl";
  WriteFileAtomic(plain, plain_text.data(), plain_text.size());
  const Tokenizer tok = Tokenizer::Default();
  DatasetOptions o;
  o.seq_len = 16;
  o.verbose = false;
  const auto want = BuildSamples({{plain, SourceKind::kJsonl, "text"}}, tok, o);
  ASSERT_GT(want->size(), 4);
  for (const char* name : {"docs.jsonl.gz", "docs.jsonl.zst", "docs_two_members.jsonl.gz"}) {
    const auto got = BuildSamples({{Fixture(name), SourceKind::kJsonl, "text"}}, tok, o);
    ASSERT_EQ(got->size(), want->size()) << name;
    EXPECT_TRUE(
        std::equal(got->sample(0), got->sample(0) + got->size() * got->width(), want->sample(0)))
        << name;
  }
  // A truncated corpus stops the run with the file named.
  ExpectErrorMentions(
      [&] {
        BuildSamples({{Fixture("truncated.jsonl.zst"), SourceKind::kJsonl, "text"}}, tok, o);
      },
      {"truncated.jsonl.zst", "truncated"});

  // Data parallelism: each rank takes its rows of every global batch of the compressed corpus.
  const auto set = BuildSamples({{Fixture("docs.jsonl.gz"), SourceKind::kJsonl, "text"}}, tok, o);
  const int B = 2, W = 2, T = o.seq_len;
  DataLoader global(set, B * W, 5, true, {}), r0(set, B, 5, true, {}), r1(set, B, 5, true, {});
  for (int step = 0; step < 3; ++step) {
    std::vector<int> gi(B * W * T), gt(gi.size()), i0(B * T), t0(i0.size()), i1(i0.size()),
        t1(i0.size());
    global.Next(gi.data(), gt.data());
    r0.Next(i0.data(), t0.data(), 0, W);
    r1.Next(i1.data(), t1.data(), 1, W);
    EXPECT_TRUE(std::equal(i0.begin(), i0.end(), gi.begin())) << step;
    EXPECT_TRUE(std::equal(i1.begin(), i1.end(), gi.begin() + B * T)) << step;
  }
  fs::remove_all(dir);
}

TEST(CompressedData, PosttrainJsonlMayBeCompressed) {
  const std::string dir = test::TempDir("compressed_chat");
  const std::string rows =
      "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", "
      "\"content\": \"Hello there.\"}]}\n";
  const std::string gz = Gzip(rows), path = dir + "/chat.jsonl.gz", plain = dir + "/chat.jsonl";
  WriteFileAtomic(path, gz.data(), gz.size());
  WriteFileAtomic(plain, rows.data(), rows.size());
  const Tokenizer tok = Tokenizer::Default();
  PosttrainDataOptions opt;
  const auto a = ReadChatJsonl(path, tok, opt), b = ReadChatJsonl(plain, tok, opt);
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(a[0].ids, b[0].ids);
  EXPECT_EQ(a[0].scored, b[0].scored);
  fs::remove_all(dir);
}

}  // namespace train_compressed_data_test
}  // namespace elm
