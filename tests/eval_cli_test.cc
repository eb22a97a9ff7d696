// `elm eval` and `elm perplexity` end to end on the bundled tiny model: the results table, the
// JSON files, the SciQ skip message and option, and errors for bad input.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/mmap_file.h"
#include "test_util.h"

namespace elm {
namespace eval_cli_test {
namespace fs = std::filesystem;
using nlohmann::json;

const std::string kTiny = std::string(ELM_SOURCE_DIR) + "/models/tiny-random-32k";

TEST(EvalCli, EvalWritesTableResultsAndRequests) {
  const std::string tmp = test::TempDir("eval_cli");
  std::string out, err;
  ASSERT_EQ(test::RunElm("eval --model " + kTiny +
                             " --tasks arc_easy,winogrande,lambada_openai --limit 3 --output " +
                             tmp + "/r.json --output-requests " + tmp + "/q.jsonl",
                         &out, &err),
            0)
      << err;
  EXPECT_NE(out.find("| arc_easy"), std::string::npos) << out;
  EXPECT_NE(out.find("acc_norm"), std::string::npos) << out;
  EXPECT_NE(out.find("perplexity"), std::string::npos) << out;

  const json r = json::parse(ReadTextFile(tmp + "/r.json"));
  const json& res = r["results"];
  EXPECT_EQ(res["arc_easy"]["n_docs"], 3);
  // lm-evaluation-harness's keys: "<metric>,<filter>", "<metric>_stderr,<filter>", "alias".
  EXPECT_EQ(res["arc_easy"]["alias"], "arc_easy");
  EXPECT_TRUE(res["arc_easy"]["acc_norm,none"].is_number());
  EXPECT_TRUE(res["arc_easy"]["acc_norm_stderr,none"].is_number());
  EXPECT_TRUE(res["winogrande"]["acc,none"].is_number());
  EXPECT_TRUE(res["winogrande"].contains("acc_stderr,none"));
  EXPECT_FALSE(res["winogrande"].contains("acc_norm,none"));
  EXPECT_FALSE(res["winogrande"].contains("acc"));
  EXPECT_GT(res["lambada_openai"]["perplexity,none"].get<double>(), 1.0);
  EXPECT_TRUE(r["skipped"].empty());
  EXPECT_EQ(r["samples"]["arc_easy"].size(), 3u);
  EXPECT_EQ(r["config"]["max_length"], 128);
  EXPECT_EQ(r["config"]["add_bos_token"], true);
  EXPECT_EQ(r["config"]["prefix_cache"], true);

  std::stringstream lines(ReadTextFile(tmp + "/q.jsonl"));
  int n = 0;
  for (std::string line; std::getline(lines, line); ++n) {
    const json q = json::parse(line);
    EXPECT_EQ(q["context_ids"][0], 1);  // BOS
    EXPECT_FALSE(q["continuation_ids"].empty());
  }
  EXPECT_EQ(n, 3 * 4 + 3 * 2 + 3);
  fs::remove_all(tmp);
}

TEST(EvalCli, SciqFromAFile) {
  const std::string tmp = test::TempDir("eval_cli_sciq");
  std::string out, err;
  ASSERT_EQ(test::RunElm("eval --model " + kTiny + " --tasks sciq --sciq " + test::DataDir() +
                             "/eval/sciq_sample.json -o " + tmp + "/r.json",
                         &out, &err),
            0)
      << err;
  const json r = json::parse(ReadTextFile(tmp + "/r.json"));
  EXPECT_EQ(r["results"]["sciq"]["n_docs"], 2);
  EXPECT_TRUE(r["results"]["sciq"]["acc_stderr,none"].is_number());
  fs::remove_all(tmp);
}

// A task named without its data is an error that names the files looked for and where to get
// them, before the model loads (it used to exit 0 with an empty table); "all" skips SciQ, which
// elm does not ship, with a note.
TEST(EvalCli, NamedTaskWithoutDataIsAnError) {
  const std::string tmp = test::TempDir("eval_cli_nodata");
  std::string out, err;
  EXPECT_NE(test::RunElm("eval --model " + kTiny + " --tasks sciq --data-dir " + tmp, &out, &err),
            0);
  EXPECT_NE(err.find("task sciq: no data"), std::string::npos) << err;
  EXPECT_NE(err.find(tmp + "/sciq_test.json"), std::string::npos) << err;
  EXPECT_NE(err.find("--sciq FILE"), std::string::npos) << err;
  EXPECT_EQ(out.find("| task"), std::string::npos) << out;  // no empty table

  ASSERT_EQ(test::RunElm("eval --model " + kTiny + " --tasks all --limit 1 -o " + tmp + "/r.json",
                         &out, &err),
            0)
      << err;
  EXPECT_NE(err.find("sciq: skipped"), std::string::npos) << err;
  EXPECT_NE(err.find("mmlu: skipped"), std::string::npos) << err;
  const json r = json::parse(ReadTextFile(tmp + "/r.json"));
  // Every task elm does not ship: sciq, mmlu, truthfulqa_mc2, race, crows_pairs_english, siqa.
  EXPECT_EQ(r["skipped"].size(), 6u);
  EXPECT_TRUE(r["results"].contains("openbookqa"));  // shipped (data/eval/openbookqa.jsonl)
  EXPECT_FALSE(r["results"].contains("sciq"));
  EXPECT_TRUE(r["results"].contains("arc_easy"));
  fs::remove_all(tmp);
}

TEST(EvalCli, EvalErrors) {
  std::string out, err;
  EXPECT_NE(test::RunElm("eval --model " + kTiny + " --tasks arc_easy,mmlu_pro", &out, &err), 0);
  EXPECT_NE(err.find("unknown task \"mmlu_pro\""), std::string::npos) << err;
  EXPECT_NE(
      test::RunElm("eval --model " + kTiny + " --tasks sciq --sciq /nonexistent.json", &out, &err),
      0);
  EXPECT_NE(err.find("/nonexistent.json"), std::string::npos) << err;
  EXPECT_NE(
      test::RunElm("eval --model " + kTiny + " --tasks boolq --data-dir /nonexistent", &out, &err),
      0);
  EXPECT_NE(err.find("/nonexistent"), std::string::npos) << err;
}

TEST(EvalCli, Perplexity) {
  const std::string tmp = test::TempDir("eval_cli_ppl");
  const std::string text = "First Citizen:\nBefore we proceed any further, hear me speak.\n";
  std::ofstream(tmp + "/t.txt") << text;
  std::string out, err;
  ASSERT_EQ(test::RunElm("perplexity --model " + kTiny + " --file " + tmp + "/t.txt --context 8" +
                             " --stride 4 --windows -o " + tmp + "/p.json",
                         &out, &err),
            0)
      << err;
  EXPECT_NE(out.find("word perplexity"), std::string::npos) << out;
  const json p = json::parse(ReadTextFile(tmp + "/p.json"));
  EXPECT_EQ(p["num_bytes"], text.size());
  EXPECT_EQ(p["config"]["stride"], 4);
  EXPECT_EQ(p["scored_tokens"], p["text_tokens"].get<int>() + 1);  // BOS is scored too
  EXPECT_EQ(p["windows"].size(), p["num_windows"]);
  for (const auto& w : p["windows"]) EXPECT_LE(w["input_ids"].size(), 8u);
  EXPECT_NE(
      test::RunElm("perplexity --model " + kTiny + " --file " + tmp + "/missing.txt", &out, &err),
      0);
  EXPECT_NE(err.find("missing.txt"), std::string::npos) << err;
  fs::remove_all(tmp);
}

}  // namespace eval_cli_test
}  // namespace elm
