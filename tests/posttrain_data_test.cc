// Post-training data (src/data/chat_dataset.h): chat and preference JSONL rendered through the
// Instruct template, prompt masking, TRL's truncation, batching, and the errors for bad rows.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>

#include "base/error.h"
#include "data/chat_dataset.h"
#include "test_util.h"

namespace elm {
namespace posttrain_data_test {

const Tokenizer& Tok() {
  static const Tokenizer tok = Tokenizer::Default();
  return tok;
}

std::string ErrorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(PosttrainData, ChatRowMasksEverythingButAssistantTurns) {
  const PosttrainDataOptions opt;
  const SftExample ex = ParseChatRow(
      R"({"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi there"},)"
      R"({"role":"assistant","content":"Hello!"},{"role":"user","content":"Bye"},)"
      R"({"role":"assistant","content":"Goodbye."}]})",
      Tok(), opt, "x.jsonl:1");
  const std::vector<ChatMessage> msgs = {{"system", "Be brief."},
                                         {"user", "Hi there"},
                                         {"assistant", "Hello!"},
                                         {"user", "Bye"},
                                         {"assistant", "Goodbye."}};
  EXPECT_EQ(ex.ids, ApplyChatTemplate(Tok(), msgs, false));
  ASSERT_EQ(ex.scored.size(), ex.ids.size());
  // Each assistant turn is one run of scored tokens: its content and its EOS; headers, system and
  // user turns are prompt.
  std::vector<std::vector<int>> runs;
  for (size_t i = 0; i < ex.ids.size(); ++i) {
    if (!ex.scored[i]) continue;
    if (i == 0 || !ex.scored[i - 1]) runs.emplace_back();
    runs.back().push_back(ex.ids[i]);
  }
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(Tok().Decode(runs[0]), "Hello!");
  EXPECT_EQ(Tok().Decode(runs[1]), "Goodbye.");
  for (const auto& r : runs) EXPECT_EQ(r.back(), Tok().eos_id());
  EXPECT_EQ(ex.scored.back(), 1);
  EXPECT_EQ(ex.scored.front(), 0);
}

TEST(PosttrainData, ChatRowErrorsNameTheLine) {
  const PosttrainDataOptions opt;
  auto parse = [&](const std::string& s) {
    return ErrorOf([&] { ParseChatRow(s, Tok(), opt, "chat.jsonl:7"); });
  };
  EXPECT_NE(parse("{not json").find("chat.jsonl:7: not valid JSON"), std::string::npos);
  EXPECT_NE(parse("[1]").find("chat.jsonl:7: expected a JSON object"), std::string::npos);
  EXPECT_NE(parse(R"({"text":"x"})").find("chat.jsonl:7: expected a field 'messages'"),
            std::string::npos);
  EXPECT_NE(
      parse(R"({"messages":[{"role":"bot","content":"x"}]})").find("messages[0] has role 'bot'"),
      std::string::npos);
  EXPECT_NE(parse(R"({"messages":[{"role":"user"}]})").find("messages[0] must be an object"),
            std::string::npos);
  EXPECT_NE(parse(R"({"messages":[{"role":"user","content":"hi"}]})").find("no assistant message"),
            std::string::npos);
  EXPECT_NE(
      parse(R"({"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":" "}]})")
          .find("messages[1] is an empty completion"),
      std::string::npos);
  PosttrainDataOptions tight;
  tight.max_length = 6;
  EXPECT_NE(
      ErrorOf([&] {
        ParseChatRow(R"({"messages":[{"role":"user","content":"a long question here"},)"
                     R"({"role":"assistant","content":"yes"}]})",
                     Tok(), tight, "chat.jsonl:9");
      }).find("chat.jsonl:9: the prompt leaves no room for the completion within max_length 6"),
      std::string::npos);
}

TEST(PosttrainData, ReadChatJsonlSkipsBlankLinesAndNamesFileAndLine) {
  const std::string dir = test::TempDir("posttrain_data");
  const std::string path = dir + "/chat.jsonl";
  std::ofstream(path)
      << R"({"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]})"
      << "\n\n"
      << R"({"messages":[]})"
      << "\n";
  const std::string err = ErrorOf([&] { ReadChatJsonl(path, Tok(), {}); });
  EXPECT_NE(err.find(path + ":3: no assistant message"), std::string::npos) << err;
  std::ofstream(path)
      << R"({"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]})"
      << "\n\n";
  EXPECT_EQ(ReadChatJsonl(path, Tok(), {}).size(), 1u);
  EXPECT_NE(ErrorOf([&] { ReadChatJsonl(dir + "/missing.jsonl", Tok(), {}); }).find("cannot open"),
            std::string::npos);
}

// The three layouts of one pair give the same tokens: the prompt is [BOS] + an empty system turn
// + the user turn, each answer the assistant turn continuing it plus TRL's EOS.
TEST(PosttrainData, PreferenceLayoutsAgree) {
  const PosttrainDataOptions opt;
  const std::string uf =
      R"({"prompt":"What is 2+2?","chosen":[{"role":"user","content":"What is 2+2?"},)"
      R"({"role":"assistant","content":"4"}],"rejected":[{"role":"user","content":"What is 2+2?"},)"
      R"({"role":"assistant","content":"5"}]})";
  const std::string strings = R"({"prompt":"What is 2+2?","chosen":"4","rejected":"5"})";
  const std::string lists =
      R"({"prompt":[{"role":"system","content":""},{"role":"user","content":"What is 2+2?"}],)"
      R"("chosen":[{"role":"assistant","content":"4"}],"rejected":[{"role":"assistant","content":"5"}]})";
  const PreferenceExample a = ParsePreferenceRow(uf, Tok(), opt, "p:1");
  const PreferenceExample b = ParsePreferenceRow(strings, Tok(), opt, "p:2");
  const PreferenceExample c = ParsePreferenceRow(lists, Tok(), opt, "p:3");
  for (const auto* x : {&b, &c}) {
    EXPECT_EQ(x->prompt, a.prompt);
    EXPECT_EQ(x->chosen, a.chosen);
    EXPECT_EQ(x->rejected, a.rejected);
  }
  const std::vector<ChatMessage> prompt = {{"system", ""}, {"user", "What is 2+2?"}};
  EXPECT_EQ(a.prompt, ApplyChatTemplate(Tok(), prompt, false));
  std::vector<ChatMessage> full = prompt;
  full.push_back({"assistant", "4"});
  std::vector<int> want = ApplyChatTemplate(Tok(), full, false);
  want.erase(want.begin(), want.begin() + static_cast<std::ptrdiff_t>(a.prompt.size()));
  want.push_back(Tok().eos_id());
  EXPECT_EQ(a.chosen, want);
  EXPECT_EQ(a.chosen.back(), Tok().eos_id());
  EXPECT_EQ(a.chosen[a.chosen.size() - 2], Tok().eos_id());
}

TEST(PosttrainData, PreferenceErrors) {
  const PosttrainDataOptions opt;
  auto parse = [&](const std::string& s) {
    return ErrorOf([&] { ParsePreferenceRow(s, Tok(), opt, "pref.jsonl:4"); });
  };
  EXPECT_NE(parse(R"({"prompt":"q","chosen":"a"})").find("pref.jsonl:4: expected fields"),
            std::string::npos);
  EXPECT_NE(parse(R"({"prompt":"q","chosen":"a","rejected":""})")
                .find("pref.jsonl:4: the 'rejected' answer is an empty completion"),
            std::string::npos);
  EXPECT_NE(
      parse(R"({"chosen":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}],)"
            R"("rejected":[{"role":"user","content":"other"},{"role":"assistant","content":"b"}]})")
          .find("differ before their last message"),
      std::string::npos);
  EXPECT_NE(
      parse(R"({"chosen":[{"role":"user","content":"q"},{"role":"user","content":"a"}],)"
            R"("rejected":[{"role":"user","content":"q"},{"role":"assistant","content":"b"}]})")
          .find("the last 'chosen' message has role 'user'"),
      std::string::npos);
  EXPECT_NE(parse(R"({"prompt":3,"chosen":[{"role":"assistant","content":"a"}],)"
                  R"("rejected":[{"role":"assistant","content":"b"}]})")
                .find("'prompt' must be a string or a list"),
            std::string::npos);
  PosttrainDataOptions bad;
  bad.max_length = 8;
  bad.max_prompt_length = 8;
  EXPECT_NE(ErrorOf([&] {
              ParsePreferenceRow(R"({"prompt":"q","chosen":"a","rejected":"b"})", Tok(), bad,
                                 "p:1");
            }).find("leaves no room below max_length"),
            std::string::npos);
}

// TRL tokenize_row: the prompt keeps its end, then the answers are cut to max_length − max_prompt.
TEST(PosttrainData, TruncationFollowsTrl) {
  PosttrainDataOptions opt;
  opt.max_length = 10;
  opt.max_prompt_length = 4;
  PreferenceExample ex{{1, 10, 11, 12, 13, 14}, {20, 21, 2}, {30, 2}};
  TruncatePreference(ex, opt);  // 6 + 3 ≤ 10: untouched
  EXPECT_EQ(ex.prompt.size(), 6u);
  ex = {{1, 10, 11, 12, 13, 14, 15, 16}, {20, 21, 2}, {30, 2}};
  TruncatePreference(ex, opt);  // 8 + 3 > 10: the prompt keeps its last 4 (BOS lost)
  EXPECT_EQ(ex.prompt, (std::vector<int>{13, 14, 15, 16}));
  EXPECT_EQ(ex.chosen.size(), 3u);
  ex = {{1, 10, 11}, {20, 21, 22, 23, 24, 25, 26, 27, 2}, {30, 2}};
  TruncatePreference(ex, opt);  // 3 + 9 > 10, prompt short: answers cut to 10 − 4 = 6
  EXPECT_EQ(ex.prompt.size(), 3u);
  EXPECT_EQ(ex.chosen, (std::vector<int>{20, 21, 22, 23, 24, 25}));
  EXPECT_EQ(ex.rejected, (std::vector<int>{30, 2}));
}

TEST(PosttrainData, BatchesShiftAndMask) {
  const SftExample a{{1, 5, 6, 7, 2}, {0, 0, 1, 1, 1}};
  const SftExample b{{1, 8, 2}, {0, 0, 1}};
  const std::vector<SftExample> rows = {a, b};
  const TokenBatch s = MakeSftBatch(rows, 2);
  EXPECT_EQ(s.B, 2);
  EXPECT_EQ(s.T, 4);
  EXPECT_EQ(s.inputs, (std::vector<int>{1, 5, 6, 7, 1, 8, 2, 2}));
  EXPECT_EQ(s.targets, (std::vector<int>{-100, 6, 7, 2, -100, 2, -100, -100}));
  const std::vector<PreferenceExample> pairs = {{{1, 5}, {6, 2}, {7, 8, 2}}};
  const TokenBatch p = MakePreferenceBatch(pairs, 2);
  EXPECT_EQ(p.B, 2);
  EXPECT_EQ(p.T, 4);
  EXPECT_EQ(p.inputs, (std::vector<int>{1, 5, 6, 2, 1, 5, 7, 8}));
  EXPECT_EQ(p.targets, (std::vector<int>{-100, 6, 2, -100, -100, 7, 8, 2}));
  EXPECT_EQ(p.lengths, (std::vector<int>{4, 5}));
}

}  // namespace posttrain_data_test
}  // namespace elm
