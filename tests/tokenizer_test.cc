// Tokenizer tests: exact ids against two reference corpora produced by independent
// implementations (tests/data/tokenizer/*.jsonl), round trips, streaming, errors.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "io/model_tokenizer.h"
#include "text/utf8.h"
#include "tokenizer/tokenizer.h"

namespace elm {
namespace tokenizer_test {

using nlohmann::json;

const std::string kDataDir = ELM_TEST_DATA_DIR "/tokenizer";
const std::string kLlamaJson = ELM_SOURCE_DIR "/data/tokenizer/llama2/tokenizer.json";

std::vector<json> ReadJsonl(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << "cannot open " << path;
  std::vector<json> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) rows.push_back(json::parse(line));
  }
  return rows;
}

const Tokenizer& Llama() {
  static const Tokenizer tok = Tokenizer::Default();
  return tok;
}

// Reference UTF-8 check, written independently of src/text/utf8.h: decode code points and
// reject overlong forms, surrogates and values above U+10FFFF. Returns the offset of the first
// bad sequence or -1.
long FirstInvalidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n;
    char32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 2, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 3, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 4, cp = c & 0x07;
    } else {
      return static_cast<long>(i);
    }
    if (i + n > s.size()) return static_cast<long>(i);
    for (size_t k = 1; k < n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return static_cast<long>(i);
      cp = (cp << 6) | (cc & 0x3F);
    }
    const char32_t min = n == 2 ? 0x80 : n == 3 ? 0x800 : 0x10000;
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return static_cast<long>(i);
    i += n;
  }
  return -1;
}

std::string ToUtf8(char32_t cp) {
  std::string s;
  utf8::Append(s, static_cast<uint32_t>(cp));
  return s;
}

std::string StreamAll(const Tokenizer& tok, const std::vector<int>& ids, bool skip_special = true) {
  StreamDecoder dec(tok, skip_special);
  std::string all;
  for (const int id : ids) {
    const std::string piece = dec.Push(id);
    EXPECT_EQ(FirstInvalidUtf8(piece), -1) << "partial character emitted for id " << id;
    all += piece;
  }
  return all + dec.Flush();
}

std::string ErrorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no elm::Error thrown)";
}

// ---------------------------------------------------------------------------------------------
// Reference corpora

TEST(TokenizerTest, ReferenceCasesExact) {
  const auto rows = ReadJsonl(kDataDir + "/llama2_cases.jsonl");
  ASSERT_GE(rows.size(), 300u);
  for (const json& row : rows) {
    const std::string text = row["text"];
    const auto ids = Llama().Encode(text, /*add_bos=*/true);
    EXPECT_EQ(ids, row["ids"].get<std::vector<int>>()) << "text: " << text;
    EXPECT_EQ(Llama().Decode(ids), row["decoded"].get<std::string>()) << "text: " << text;
  }
}

TEST(TokenizerTest, HardCasesExact) {
  const auto rows = ReadJsonl(kDataDir + "/hard_cases.jsonl");
  ASSERT_GE(rows.size(), 300u);
  for (const json& row : rows) {
    const std::string text = row["text"];
    const auto ids = Llama().Encode(text, true);
    const auto expected = row["ids"].get<std::vector<int>>();
    EXPECT_EQ(ids, expected) << "text: " << json(text).dump();
    EXPECT_EQ(Llama().Decode(expected), row["decoded"].get<std::string>())
        << "text: " << json(text).dump();
    EXPECT_EQ(StreamAll(Llama(), expected), row["decoded"].get<std::string>())
        << "text: " << json(text).dump();

    const auto special = row["special_ids"].get<std::vector<int>>();
    EXPECT_EQ(Llama().EncodeWithSpecial(text, true), special) << "text: " << json(text).dump();
    EXPECT_EQ(Llama().Decode(special), row["special_decoded"].get<std::string>())
        << "text: " << json(text).dump();
  }
}

TEST(TokenizerTest, FromFileMatchesDefault) {
  const Tokenizer tok = Tokenizer::FromFile(kLlamaJson);
  EXPECT_EQ(tok.vocab_size(), 32000);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.unk_id(), 0);
  EXPECT_TRUE(tok.add_bos());
  const std::string text = "Hello world! 镇🦙 <s>\n\tx";
  EXPECT_EQ(tok.Encode(text, true), Llama().Encode(text, true));
  EXPECT_EQ(tok.EncodeWithSpecial(text, false), Llama().EncodeWithSpecial(text, false));
}

TEST(TokenizerTest, VocabularyAccessors) {
  const Tokenizer& tok = Llama();
  EXPECT_EQ(tok.vocab_size(), 32000);
  EXPECT_TRUE(tok.add_bos());
  EXPECT_EQ(tok.Piece(0), "<unk>");
  EXPECT_EQ(tok.Piece(1), "<s>");
  EXPECT_EQ(tok.Piece(2), "</s>");
  EXPECT_EQ(tok.Piece(13), "<0x0A>");
  EXPECT_EQ(tok.Piece(29871), "\xE2\x96\x81");
  EXPECT_EQ(tok.TokenId("\xE2\x96\x81the"), 278);
  EXPECT_EQ(tok.TokenId("<s>"), 1);
  EXPECT_EQ(tok.TokenId("no-such-token-xyz"), std::nullopt);
  for (int id : {0, 1, 2}) EXPECT_TRUE(tok.IsSpecial(id)) << id;
  for (int id : {3, 13, 29871, 31999, -1, 32000}) EXPECT_FALSE(tok.IsSpecial(id)) << id;
  EXPECT_NE(ErrorOf([&] { (void)tok.Piece(32000); }).find("32000"), std::string::npos);
  EXPECT_NE(ErrorOf([&] { (void)tok.Piece(-5); }).find("-5"), std::string::npos);
}

TEST(TokenizerTest, EmptyAndBos) {
  EXPECT_EQ(Llama().Encode("", true), std::vector<int>{1});
  EXPECT_EQ(Llama().Encode("", false), std::vector<int>{});
  EXPECT_EQ(Llama().Encode("Hello", false), (std::vector<int>{15043}));
  EXPECT_EQ(Llama().Decode(std::vector<int>{}), "");
  EXPECT_EQ(Llama().Decode(std::vector<int>{1, 2}), "");
}

// ---------------------------------------------------------------------------------------------
// Special tokens

TEST(TokenizerTest, SpecialTokensArePlainTextUnlessAsked) {
  const std::string text = "<s>hi</s>";
  // Plain: the characters '<', 's', '>' ...
  EXPECT_EQ(Llama().Encode(text, true),
            (std::vector<int>{1, 529, 29879, 29958, 2918, 829, 29879, 29958}));
  EXPECT_EQ(Llama().Decode(Llama().Encode(text, true)), text);
  // With parsing, as HF does by default: each piece between added tokens is normalized on its
  // own, so "hi" becomes "▁hi".
  const auto special = Llama().EncodeWithSpecial(text, true);
  EXPECT_EQ(special, (std::vector<int>{1, 1, 7251, 2}));
  EXPECT_EQ(Llama().Decode(special), "hi");
  EXPECT_EQ(Llama().Decode(special, /*skip_special=*/false), "<s><s> hi</s>");
  EXPECT_EQ(Llama().EncodeWithSpecial("hello <s> world", false),
            (std::vector<int>{22172, 29871, 1, 29871, 3186}));
  // Longest match wins, and unmatched '<' stays text.
  EXPECT_EQ(Llama().EncodeWithSpecial("<unk></s", false), (std::vector<int>{0, 1533, 29879}));
}

TEST(TokenizerTest, DecodeKeepsSpecialWhenAsked) {
  EXPECT_EQ(Llama().Decode(std::vector<int>{1, 15043, 3186, 2}, false), "<s> Hello world</s>");
  EXPECT_EQ(Llama().Decode(std::vector<int>{1, 15043, 3186, 2}, true), "Hello world");
  EXPECT_EQ(StreamAll(Llama(), {1, 15043, 3186, 2}, false), "<s> Hello world</s>");
  EXPECT_EQ(StreamAll(Llama(), {1, 15043, 3186, 2}, true), "Hello world");
}

// ---------------------------------------------------------------------------------------------
// Round trips

TEST(TokenizerTest, RoundTripRandomUnicode) {
  std::mt19937 rng(1234);
  // Code points from every plane; "▁" (U+2581) is excluded because HF's normalizer makes it
  // indistinguishable from a space (tested separately).
  const std::vector<std::pair<char32_t, char32_t>> ranges = {
      {0x0, 0x7F},      {0x20, 0x20},     {0x80, 0x7FF},      {0x800, 0xD7FF},
      {0xE000, 0xFFFF}, {0x4E00, 0x9FFF}, {0x1F300, 0x1FAFF}, {0x10000, 0x10FFFF},
      {0x0300, 0x036F}, {0x0900, 0x097F}, {0x9, 0xD}};
  for (int n = 0; n < 400; ++n) {
    std::string text;
    const int len = std::uniform_int_distribution<int>(0, 60)(rng);
    for (int i = 0; i < len; ++i) {
      const auto& r = ranges[std::uniform_int_distribution<size_t>(0, ranges.size() - 1)(rng)];
      char32_t cp = std::uniform_int_distribution<char32_t>(r.first, r.second)(rng);
      if (cp == 0x2581) cp = 0x2582;
      text += ToUtf8(cp);
    }
    for (bool bos : {true, false}) {
      const auto ids = Llama().Encode(text, bos);
      EXPECT_EQ(Llama().Decode(ids), text) << json(text).dump();
      EXPECT_EQ(StreamAll(Llama(), ids), text) << json(text).dump();
    }
  }
}

TEST(TokenizerTest, MetaspaceCharacterDecodesAsSpace) {
  EXPECT_EQ(Llama().Encode("a\xE2\x96\x81"
                           "b",
                           false),
            Llama().Encode("a b", false));
  EXPECT_EQ(Llama().Decode(Llama().Encode("a\xE2\x96\x81"
                                          "b",
                                          false)),
            "a b");
}

TEST(TokenizerTest, InvalidUtf8IsAnError) {
  const std::vector<std::pair<std::string, long>> cases = {
      {"\xFF", 0},     {"abc\x80", 3},       {"ok \xC3", 3},
      {"\xC0\xAF", 0}, {"x\xED\xA0\x80", 1}, {"\xF4\x90\x80\x80", 0},
      {"\xE2\x96", 0}, {"a\xE2\x96z", 1},    {"\xF8\x88\x80\x80\x80", 0}};
  for (const auto& [text, offset] : cases) {
    ASSERT_EQ(FirstInvalidUtf8(text), offset);
    const std::string expected = "invalid UTF-8 at byte " + std::to_string(offset);
    EXPECT_EQ(ErrorOf([&] { (void)Llama().Encode(text, true); }), expected);
    EXPECT_EQ(ErrorOf([&] { (void)Llama().EncodeWithSpecial(text, true); }), expected);
  }
  // Random byte strings: invalid ones are rejected with the right offset, valid ones round-trip.
  std::mt19937 rng(99);
  int invalid = 0;
  for (int n = 0; n < 2000; ++n) {
    std::string bytes(std::uniform_int_distribution<size_t>(1, 24)(rng), '\0');
    for (char& c : bytes) c = static_cast<char>(std::uniform_int_distribution<int>(0, 255)(rng));
    const long bad = FirstInvalidUtf8(bytes);
    if (bad >= 0) {
      ++invalid;
      EXPECT_EQ(ErrorOf([&] { (void)Llama().Encode(bytes, true); }),
                "invalid UTF-8 at byte " + std::to_string(bad));
    } else {
      EXPECT_EQ(Llama().Decode(Llama().Encode(bytes, true)), bytes);
    }
  }
  EXPECT_GT(invalid, 1000);
}

// ---------------------------------------------------------------------------------------------
// Decoding details and streaming

TEST(TokenizerTest, DecodeOutOfRangeIdNamesIt) {
  EXPECT_NE(ErrorOf([] {
              (void)Llama().Decode(std::vector<int>{1, 32000});
            }).find("32000"),
            std::string::npos);
  EXPECT_NE(ErrorOf([] { (void)Llama().Decode(std::vector<int>{-7}); }).find("-7"),
            std::string::npos);
  StreamDecoder dec(Llama());
  EXPECT_NE(ErrorOf([&] { (void)dec.Push(123456); }).find("123456"), std::string::npos);
}

TEST(TokenizerTest, DecodeInvalidByteRunsLikeHf) {
  const int f0 = *Llama().TokenId("<0xF0>"), x9f = *Llama().TokenId("<0x9F>");
  const int nl = *Llama().TokenId("<0x0A>"), hello = 15043;
  const std::string fffd = "\xEF\xBF\xBD";
  // HF's ByteFallback: a run of byte tokens that is not valid UTF-8 becomes one U+FFFD per byte.
  EXPECT_EQ(Llama().Decode(std::vector<int>{f0, x9f}), fffd + fffd);
  EXPECT_EQ(Llama().Decode(std::vector<int>{hello, f0, x9f, hello}),
            "Hello" + fffd + fffd + " Hello");
  EXPECT_EQ(Llama().Decode(std::vector<int>{hello, nl, f0}), "Hello" + fffd + fffd);
  // A valid run decodes normally, also when split by a skipped special token.
  EXPECT_EQ(Llama().Decode(std::vector<int>{29871, 243, 162, 1, 169, 156}), "\xF0\x9F\xA6\x99");
  // The stream cannot wait for the end of a run: it emits what is valid and replaces each byte
  // of an unfinished character at the end of the run.
  EXPECT_EQ(StreamAll(Llama(), {hello, f0, x9f, hello}), "Hello" + fffd + fffd + " Hello");
  EXPECT_EQ(StreamAll(Llama(), {hello, nl, f0}), "Hello\n" + fffd);
}

TEST(TokenizerTest, StreamDecoderNeverSplitsCharacters) {
  const std::string text =
      "🦙Ꙋ镇 hi 👨‍👩‍👧‍👦 👍🏽 日本語 😀\n🇺🇸 𠀀 end";
  const auto ids = Llama().Encode(text, true);
  StreamDecoder dec(Llama());
  std::string all;
  int empty_pushes = 0;
  for (const int id : ids) {
    const std::string piece = dec.Push(id);
    ASSERT_EQ(FirstInvalidUtf8(piece), -1) << "id " << id;
    empty_pushes += piece.empty();
    all += piece;
  }
  EXPECT_EQ(dec.Flush(), "");
  EXPECT_EQ(all, Llama().Decode(ids));
  EXPECT_EQ(all, text);
  EXPECT_GT(empty_pushes, 5);  // bytes of incomplete characters were held back

  // 🦙 = F0 9F A6 99 as four byte tokens: nothing until the last one.
  StreamDecoder llama(Llama());
  EXPECT_EQ(llama.Push(29871), "");  // "▁" at the very start: the stripped leading space
  EXPECT_EQ(llama.Push(243), "");
  EXPECT_EQ(llama.Push(162), "");
  EXPECT_EQ(llama.Push(169), "");
  EXPECT_EQ(llama.Push(156), "\xF0\x9F\xA6\x99");
  EXPECT_EQ(llama.Push(29871), " ");  // later spaces are kept
  EXPECT_EQ(llama.Push(243), "");
  EXPECT_EQ(llama.Flush(), "\xEF\xBF\xBD");
}

TEST(TokenizerTest, StreamDecoderLeadingSpaceOnlyAtStart) {
  for (const std::string text : {" hello", "  two spaces", "hello world", "\n start", " "}) {
    const auto ids = Llama().Encode(text, true);
    EXPECT_EQ(StreamAll(Llama(), ids), Llama().Decode(ids)) << json(text).dump();
    EXPECT_EQ(StreamAll(Llama(), ids), text) << json(text).dump();
  }
  // Starting the stream in the middle of a text: one leading space goes, like Decode.
  const std::vector<int> tail = {3186, 29991};  // "▁world", "!"
  EXPECT_EQ(StreamAll(Llama(), tail), "world!");
  EXPECT_EQ(Llama().Decode(tail), "world!");
  // A continuation (the server's replies) keeps it: prompt text + stream text = the whole text.
  StreamDecoder cont(Llama(), /*skip_special=*/true, /*continuation=*/true);
  EXPECT_EQ(cont.Push(3186) + cont.Push(29991) + cont.Flush(), " world!");
  const auto prompt = Llama().Encode("Hello", true);
  std::vector<int> whole = prompt;
  whole.insert(whole.end(), tail.begin(), tail.end());
  EXPECT_EQ(Llama().Decode(prompt) + " world!", Llama().Decode(whole));
}

// ---------------------------------------------------------------------------------------------
// Large inputs (a single BPE "word" can be the whole text)

TEST(TokenizerTest, LongInputsAreFastAndExact) {
  std::ifstream in(kDataDir + "/bench_sample.txt", std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string big;
  while (big.size() < (2u << 20)) big += ss.str();
  // The sample contains "▁", which decodes as a space (see MetaspaceCharacterDecodesAsSpace).
  for (size_t p; (p = big.find("\xE2\x96\x81")) != std::string::npos;) big.replace(p, 3, " ");
  std::mt19937 rng(5);
  std::string cjk, same(1 << 20, 'a');
  while (cjk.size() < (512u << 10)) {
    cjk += ToUtf8(std::uniform_int_distribution<char32_t>(0x4E00, 0x9FFF)(rng));
  }
  std::string spaces(300000, ' ');
  for (const std::string* text : {&big, &cjk, &same, &spaces}) {
    const auto start = std::chrono::steady_clock::now();
    const auto ids = Llama().Encode(*text, true);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_LT(seconds, 10.0) << "quadratic behaviour? " << text->size() << " bytes";
    // EXPECT_TRUE: gtest would spend minutes diffing megabyte strings on a failure.
    EXPECT_TRUE(Llama().Decode(ids) == *text) << "round trip of " << text->size() << " bytes";
  }
  // The word cache must not change results: a text made of one repeated line gives the line's
  // ids repeated.
  const std::string line = "The quick brown fox, 镇🦙!\n";
  std::string repeated;
  for (int i = 0; i < 100; ++i) repeated += line;
  auto one = Llama().Encode(line, false);
  const auto many = Llama().Encode(repeated, false);
  // Only the first repetition starts the text; the rest follow "\n", with no "▁" prepended.
  const auto rest = Llama().Encode("\n" + line, false);
  std::vector<int> expected = one;
  for (int i = 1; i < 100; ++i) expected.insert(expected.end(), rest.begin() + 2, rest.end());
  EXPECT_EQ(many, expected);
}

TEST(TokenizerTest, ConcurrentUse) {
  const std::string text = "Concurrent encoding must be safe. 并发 🦙\n";
  const auto expected = Llama().Encode(text, true);
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const Tokenizer tok = Tokenizer::Default();  // shares the tables
      int good = 0;
      for (int i = 0; i < 200; ++i) good += tok.Encode(text, true) == expected;
      ok[static_cast<size_t>(t)] = good;
    });
  }
  for (auto& th : threads) th.join();
  for (int good : ok) EXPECT_EQ(good, 200);
}

// ---------------------------------------------------------------------------------------------
// Small hand-made tokenizers: merge order, and malformed files

// A minimal Llama-style tokenizer.json. `model` overrides model fields.
json TinyTokenizer() {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}, {"\xE2\x96\x81", 3}, {"a", 4},   {"b", 5},
                {"c", 6},     {"aa", 7},  {"bc", 8},   {"ab", 9},           {"abc", 10}};
  for (int b = 0; b < 256; ++b) {
    char piece[8];
    std::snprintf(piece, sizeof piece, "<0x%02X>", b);
    vocab[piece] = 11 + b;
  }
  return {
      {"version", "1.0"},
      {"added_tokens", json::array({{{"id", 0}, {"content", "<unk>"}, {"special", true}},
                                    {{"id", 1}, {"content", "<s>"}, {"special", true}},
                                    {{"id", 2}, {"content", "</s>"}, {"special", true}}})},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers", json::array({{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
                                     {{"type", "Replace"},
                                      {"pattern", {{"String", " "}}},
                                      {"content", "\xE2\x96\x81"}}})}}},
      {"pre_tokenizer", nullptr},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         json::array(
             {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
              {{"type", "ByteFallback"}},
              {{"type", "Fuse"}},
              {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}}},
      {"model",
       {{"type", "BPE"},
        {"unk_token", "<unk>"},
        {"byte_fallback", true},
        {"fuse_unk", true},
        {"vocab", vocab},
        {"merges", json::array({"b c", "a a", "a b", "a bc"})}}}};
}

TEST(TokenizerTest, MergePriorityAndLeftmostTies) {
  const Tokenizer tok = Tokenizer::FromJson(TinyTokenizer().dump(), "tiny.json");
  EXPECT_TRUE(tok.add_bos());
  // "bc" (rank 0) beats "ab" (rank 2); then "a bc" (rank 3) gives "abc".
  EXPECT_EQ(tok.Encode("abc", false), (std::vector<int>{3, 10}));
  // Equal ranks: the leftmost pair merges first: a a a -> aa a.
  EXPECT_EQ(tok.Encode("aaa", false), (std::vector<int>{3, 7, 4}));
  EXPECT_EQ(tok.Encode("aaaa", false), (std::vector<int>{3, 7, 7}));
  // Unknown characters fall back to bytes; the merges-list forms ["a","b"] are accepted too.
  EXPECT_EQ(tok.Encode("d", true), (std::vector<int>{1, 3, 11 + 'd'}));
  json pairs = TinyTokenizer();
  pairs["model"]["merges"] = json::array({{"b", "c"}, {"a", "a"}, {"a", "b"}, {"a", "bc"}});
  EXPECT_EQ(Tokenizer::FromJson(pairs.dump(), "pairs.json").Encode("abc aaa", false),
            tok.Encode("abc aaa", false));
  EXPECT_EQ(tok.Decode(tok.Encode("ab c d", true)), "ab c d");
}

TEST(TokenizerTest, ConfigControlsBos) {
  const std::string tiny = TinyTokenizer().dump();
  EXPECT_FALSE(Tokenizer::FromJson(tiny, "t", R"({"add_bos_token": false})").add_bos());
  EXPECT_TRUE(Tokenizer::FromJson(tiny, "t", R"({"add_bos_token": true})").add_bos());
  json no_template = TinyTokenizer();
  no_template["post_processor"] = nullptr;
  EXPECT_TRUE(Tokenizer::FromJson(no_template.dump(), "t").add_bos());  // Llama-2 default
  EXPECT_NE(ErrorOf([&] {
              (void)Tokenizer::FromJson(tiny, "t.json", R"({"add_bos_token": 3})");
            }).find("add_bos_token"),
            std::string::npos);
}

TEST(TokenizerTest, MalformedTokenizerJsonIsAnError) {
  struct Case {
    std::function<void(json&)> edit;
    std::string field;  // must appear in the message
  };
  const std::vector<Case> cases = {
      {[](json& j) { j.erase("model"); }, "model"},
      {[](json& j) { j["model"] = 5; }, "model"},
      {[](json& j) { j["model"].erase("vocab"); }, "model.vocab"},
      {[](json& j) { j["model"]["vocab"] = json::array(); }, "model.vocab"},
      {[](json& j) { j["model"]["vocab"]["a"] = "four"; }, "model.vocab"},
      {[](json& j) { j["model"]["vocab"]["zz"] = 4; }, "model.vocab"},
      {[](json& j) { j["model"].erase("merges"); }, "model.merges"},
      {[](json& j) { j["model"]["merges"] = "a b"; }, "model.merges"},
      {[](json& j) { j["model"]["merges"].push_back("a q"); }, "model.merges[4]"},
      {[](json& j) { j["model"]["merges"].push_back("c c"); }, "model.merges[4]"},
      {[](json& j) { j["model"]["merges"].push_back(7); }, "model.merges[4]"},
      {[](json& j) { j["model"]["merges"].push_back("abc"); }, "model.merges[4]"},
      {[](json& j) { j["model"]["type"] = "Unigram"; }, "model.type"},
      {[](json& j) { j["model"]["unk_token"] = "<nope>"; }, "model.unk_token"},
      {[](json& j) { j["model"]["dropout"] = 0.1; }, "model.dropout"},
      {[](json& j) {
         j["normalizer"] = {{"type", "NFKC"}};
       },
       "normalizer.type"},
      {[](json& j) {
         j["normalizer"]["normalizers"][1]["pattern"] = {{"Regex", " "}};
       },
       "normalizer.normalizers[1].pattern"},
      {[](json& j) {
         j["pre_tokenizer"] = {{"type", "Metaspace"}};
       },
       "pre_tokenizer"},
      {[](json& j) {
         j["decoder"] = {{"type", "WordPiece"}};
       },
       "decoder.type"},
      {[](json& j) { j["decoder"]["decoders"][3]["stop"] = 1; }, "decoder.decoders[3].stop"},
      {[](json& j) {
         j["post_processor"] = {{"type", "ByteLevel"}};
       },
       "post_processor.type"},
      {[](json& j) { j["added_tokens"][0]["id"] = "zero"; }, "added_tokens[0].id"},
      {[](json& j) { j["added_tokens"][1]["lstrip"] = true; }, "added_tokens[1].lstrip"},
      {[](json& j) {
         j["added_tokens"].push_back({{"id", 400}, {"content", "<x>"}});
       },
       "added_tokens"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    json j = TinyTokenizer();
    cases[i].edit(j);
    const std::string message = ErrorOf([&] { (void)Tokenizer::FromJson(j.dump(), "bad.json"); });
    EXPECT_NE(message.find("bad.json"), std::string::npos) << i << ": " << message;
    EXPECT_NE(message.find(cases[i].field), std::string::npos) << i << ": " << message;
  }
  EXPECT_NE(ErrorOf([] {
              (void)Tokenizer::FromJson("{not json", "broken.json");
            }).find("broken.json: not valid JSON"),
            std::string::npos);
  EXPECT_NE(ErrorOf([] { (void)Tokenizer::FromJson("[1, 2]", "array.json"); }).find("array.json"),
            std::string::npos);
  EXPECT_NE(ErrorOf([] {
              (void)Tokenizer::FromFile("/nonexistent/tokenizer.json");
            }).find("/nonexistent/tokenizer.json"),
            std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Files and model directories

class TempDir {
 public:
  TempDir() {
    path_ = std::filesystem::temp_directory_path() /
            ("elm_tok_test_" + std::to_string(std::random_device{}()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }
  void Write(const std::string& name, const std::string& text) const {
    std::ofstream(path_ / name, std::ios::binary) << text;
  }

 private:
  std::filesystem::path path_;
};

TEST(TokenizerTest, FromFileReadsConfigBeside) {
  TempDir dir;
  dir.Write("tokenizer.json", TinyTokenizer().dump());
  EXPECT_TRUE(Tokenizer::FromFile((dir.path() / "tokenizer.json").string()).add_bos());
  dir.Write("tokenizer_config.json", R"({"add_bos_token": false, "bos_token": "<s>"})");
  EXPECT_FALSE(Tokenizer::FromFile((dir.path() / "tokenizer.json").string()).add_bos());
  dir.Write("tokenizer_config.json", "{oops");
  const std::string message =
      ErrorOf([&] { (void)Tokenizer::FromFile((dir.path() / "tokenizer.json").string()); });
  EXPECT_NE(message.find("tokenizer_config.json"), std::string::npos) << message;
}

TEST(TokenizerTest, LoadTokenizerForModelDirectory) {
  TempDir dir;
  // No tokenizer.json: the built-in Llama-2 tokenizer.
  EXPECT_EQ(LoadTokenizerFor(dir.path().string(), "").vocab_size(), 32000);
  EXPECT_EQ(LoadTokenizerFor("", "").vocab_size(), 32000);
  dir.Write("tokenizer.json", TinyTokenizer().dump());
  EXPECT_EQ(LoadTokenizerFor(dir.path().string(), "").vocab_size(), 11 + 256);
  // An explicit path wins.
  EXPECT_EQ(LoadTokenizerFor(dir.path().string(), kLlamaJson).vocab_size(), 32000);
  EXPECT_NE(ErrorOf([&] {
              (void)LoadTokenizerFor(dir.path().string(), "/no/such.json");
            }).find("/no/such.json"),
            std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// CLI (only when built by CMake, which knows where the elm binary is)

#ifdef ELM_BINARY
std::string RunCommand(const std::string& command, int* status) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  *status = pclose(p);
  return out;
}

TEST(TokenizerCliTest, TokenizeAndDetokenize) {
  TempDir dir;
  dir.Write("in.jsonl", "\"Hello world!\"\n\"<s>hi</s>\"\n\"\"\n");
  int status = -1;
  const std::string in = (dir.path() / "in.jsonl").string();
  EXPECT_EQ(RunCommand(std::string(ELM_BINARY) + " tokenize --input " + in, &status),
            "[1,15043,3186,29991]\n[1,529,29879,29958,2918,829,29879,29958]\n[1]\n");
  EXPECT_EQ(status, 0);
  EXPECT_EQ(RunCommand(std::string(ELM_BINARY) + " tokenize --special --input " + in, &status),
            "[1,15043,3186,29991]\n[1,1,7251,2]\n[1]\n");
  dir.Write("ids.jsonl", "[1,15043,3186,29991]\n[1,1,7251,2]\n[]\n");
  EXPECT_EQ(RunCommand(std::string(ELM_BINARY) + " detokenize --input " +
                           (dir.path() / "ids.jsonl").string(),
                       &status),
            "\"Hello world!\"\n\"hi\"\n\"\"\n");
  EXPECT_EQ(status, 0);
  // A line that starts with a double quote must be one JSON string (other lines are plain text).
  dir.Write("bad.jsonl", "\"fine\"\n\"unterminated\n");
  const std::string err = RunCommand(std::string(ELM_BINARY) + " tokenize --input " +
                                         (dir.path() / "bad.jsonl").string() + " 2>&1",
                                     &status);
  EXPECT_NE(status, 0);
  EXPECT_NE(err.find("bad.jsonl:2"), std::string::npos) << err;
}
#endif

}  // namespace tokenizer_test
}  // namespace elm
