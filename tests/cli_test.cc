// The CLI forms used by external checks: `elm logits`, `elm generate --ids`, `elm info`, and their
// errors on bad input.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/mmap_file.h"
#include "test_util.h"

namespace elm {
namespace {
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
  for (const char* name : {"a_tiny_qknorm_tied", "b_tiny_noqknorm_untied", "c_tiny_uniform_llamalike"}) {
    SCOPED_TRACE(name);
    const std::string dir = test::DataDir() + "/conformance/" + name;
    const json v = json::parse(ReadTextFile(dir + "/vectors.json"));
    const auto& seq = v["sequences"][3];
    const auto tokens = seq["tokens"].get<std::vector<int>>();
    const std::string tmp = test::TempDir("cli");
    std::string out, err;
    ASSERT_EQ(test::RunElm("logits --model " + dir + " --ids " + Join(tokens) + " --output " +
                               tmp + "/l.bin",
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
  EXPECT_NE(test::RunElm("logits --model " + kTiny + " --ids 1,x,3 --output /dev/null", &out, &err), 0);
  EXPECT_NE(err.find("--ids"), std::string::npos) << err;
  EXPECT_NE(test::RunElm("logits --model " + kTiny + " --ids 1,256 --output /dev/null", &out, &err), 0);
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

}  // namespace
}  // namespace elm
