// The CLI forms used by external checks: `elm logits`, `elm generate --ids`, `elm info`, and their
// errors on bad input.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/mmap_file.h"
#include "test_util.h"

namespace elm {
namespace cli_test {
namespace fs = std::filesystem;
using nlohmann::json;

const std::string kTiny = test::DataDir() + "/conformance/a_tiny_qknorm_tied";

std::string Join(const std::vector<int>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s;
}

std::string LastLine(const std::string& s) {
  std::string t = s;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  const size_t nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

TEST(Cli, LogitsAndGenerateMatchReference) {
  for (const char* name :
       {"a_tiny_qknorm_tied", "b_tiny_noqknorm_untied", "c_tiny_uniform_llamalike"}) {
    SCOPED_TRACE(name);
    const std::string dir = test::DataDir() + "/conformance/" + name;
    const json v = json::parse(ReadTextFile(dir + "/vectors.json"));
    const auto& seq = v["sequences"][3];
    const auto tokens = seq["tokens"].get<std::vector<int>>();
    const std::string tmp = test::TempDir("cli");
    std::string out, err;
    ASSERT_EQ(test::RunElm("logits --model " + dir + " --ids " + Join(tokens) + " --output " + tmp +
                               "/l.bin",
                           &out, &err),
              0)
        << err;
    const uint64_t n = tokens.size() * seq["logits_shape"][1].get<uint64_t>();
    const auto got = test::ReadFloats(tmp + "/l.bin", 0, n);
    const auto ref = test::ReadFloats(dir + "/logits.bin", seq["logits_offset_bytes"], n);
    EXPECT_EQ(fs::file_size(tmp + "/l.bin"), n * 4);
    EXPECT_LE(test::MaxAbsDiff(got.data(), ref.data(), n), 1e-4f);

    for (const auto& g : v["greedy"]) {
      ASSERT_EQ(test::RunElm("generate --model " + dir + " --ids " +
                                 Join(g["prompt"].get<std::vector<int>>()) +
                                 " --max-new-tokens 16 --temperature 0 --output-ids",
                             &out, &err),
                0)
          << err;
      EXPECT_EQ(json::parse(LastLine(out)), g["generated"]);
      // Weights copied into memory instead of mmapped: the same ids.
      ASSERT_EQ(test::RunElm("generate --no-mmap --model " + dir + " --ids " +
                                 Join(g["prompt"].get<std::vector<int>>()) +
                                 " --max-new-tokens 16 --temperature 0 --output-ids",
                             &out, &err),
                0)
          << err;
      EXPECT_EQ(json::parse(LastLine(out)), g["generated"]) << "--no-mmap";
    }
    fs::remove_all(tmp);
  }
}

TEST(Cli, InfoPrintsTotals) {
  std::string out;
  ASSERT_EQ(test::RunElm("info --model " + kTiny, &out), 0);
  EXPECT_NE(out.find("total params:    90496"), std::string::npos) << out;
}

TEST(Cli, BadInputExitsNonZeroWithMessage) {
  std::string out, err;
  EXPECT_NE(test::RunElm("logits --model " + kTiny + " --ids 1,x,3 --output /dev/null", &out, &err),
            0);
  EXPECT_NE(err.find("--ids"), std::string::npos) << err;
  EXPECT_NE(test::RunElm("logits --model " + kTiny + " --ids 1,256 --output /dev/null", &out, &err),
            0);
  EXPECT_NE(err.find("256"), std::string::npos) << err;
  std::vector<int> many(129, 5);  // max_context_length is 128
  EXPECT_NE(test::RunElm("logits --model " + kTiny + " --ids " + Join(many) + " --output /dev/null",
                         &out, &err),
            0);
  EXPECT_NE(err.find("context"), std::string::npos) << err;
  EXPECT_NE(test::RunElm("generate --model " + kTiny + " --ids " + Join(many) +
                             " --max-new-tokens 4 --temperature 0",
                         &out, &err),
            0);
  EXPECT_NE(err.find("context"), std::string::npos) << err;
  // A prompt that fits, with more new tokens than room: stops at the context limit.
  ASSERT_EQ(test::RunElm("generate --model " + kTiny + " --ids " + Join(std::vector<int>(120, 5)) +
                             " --max-new-tokens 16 --temperature 0",
                         &out, &err),
            0)
      << err;
  EXPECT_EQ(json::parse(LastLine(out)).size(), 9u);  // 120 + 8 fed + 1 sampled last
  EXPECT_NE(err.find("stop: context"), std::string::npos) << err;
  EXPECT_NE(test::RunElm("info --model /nonexistent/model", &out, &err), 0);
  EXPECT_NE(err.find("/nonexistent/model"), std::string::npos) << err;
  EXPECT_NE(test::RunElm("generate --model " + kTiny + " --ids 1 --temperature -1", &out, &err), 0);
  EXPECT_NE(err.find("temperature"), std::string::npos) << err;
}

// `elm chat` driven through stdin: two turns with the Instruct template (tokens shown by
// --verbose-prompt), the KV cache kept between turns, /reset starting over, and the raw mode.
TEST(Cli, ChatTurnsKeepTheContext) {
  const std::string model = std::string(ELM_SOURCE_DIR) + "/models/tiny-random-32k";
  const std::string tmp = test::TempDir("chat");
  {
    std::ofstream in(tmp + "/turns.txt");
    in << "Hello there\nHow are you?\n/reset\nAgain\n";
  }
  std::string out, err;
  ASSERT_EQ(test::RunElm(
                "chat --model " + model + " --verbose-prompt -n 3 --temp 0 < " + tmp + "/turns.txt",
                &out, &err),
            0)
      << err;
  // One "[N tokens: ...]" line per turn.
  std::vector<std::string> prompts;
  for (size_t p = err.find("tokens: "); p != std::string::npos; p = err.find("tokens: ", p + 1))
    prompts.push_back(err.substr(p, err.find('\n', p) - p));
  ASSERT_EQ(prompts.size(), 3u) << err;
  // Turn 1 starts the conversation: BOS, then <|user|>, the message, </s> by id, <|assistant|>.
  EXPECT_EQ(prompts[0].rfind("tokens: 1:'<s>' ", 0), 0u) << prompts[0];
  for (const auto& p : prompts) {
    EXPECT_NE(p.find("1792:'user'"), std::string::npos) << p;
    EXPECT_NE(p.find("2:'</s>'"), std::string::npos) << p;
    EXPECT_NE(p.find("22137:'istant'"), std::string::npos) << p;
  }
  // Turn 2 continues the cached conversation: no BOS, it starts with the end of turn 1's reply.
  EXPECT_EQ(prompts[1].find("1:'<s>'"), std::string::npos) << prompts[1];
  // After /reset the conversation starts over.
  EXPECT_EQ(prompts[2].rfind("tokens: 1:'<s>' ", 0), 0u) << prompts[2];
  EXPECT_FALSE(out.empty());

  // Raw mode: no template, each line continues the text.
  ASSERT_EQ(test::RunElm("chat --model " + model + " --raw --verbose-prompt -n 2 --temp 0 < " +
                             tmp + "/turns.txt",
                         &out, &err),
            0)
      << err;
  EXPECT_EQ(err.find("1792:'user'"), std::string::npos) << err;
  std::filesystem::remove_all(tmp);
}

}  // namespace cli_test
}  // namespace elm
