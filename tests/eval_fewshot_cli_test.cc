// `elm eval --num-fewshot` and the tasks beyond the zero-shot seven, end to end on the bundled
// tiny model and the made-up rows of tests/data/eval/fewshot: the MMLU breakdown, the JSON in
// lm-eval's results/groups/versions/n-shot/configs layout, and the errors before the model loads.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/mmap_file.h"
#include "test_util.h"

namespace elm {
namespace eval_fewshot_cli_test {
namespace fs = std::filesystem;
using nlohmann::json;

const std::string kTiny = std::string(ELM_SOURCE_DIR) + "/models/tiny-random-32k";

std::string Fixtures() {
  return test::DataDir() + "/eval/fewshot";
}

TEST(EvalFewshotCli, MmluFiveShotWithBreakdown) {
  const std::string tmp = test::TempDir("eval_fewshot_cli");
  std::string out, err;
  ASSERT_EQ(
      test::RunElm("eval --model " + kTiny +
                       " --tasks mmlu,truthfulqa_mc2,crows_pairs_english"
                       " --num-fewshot 5 --limit 2 --data-dir " +
                       Fixtures() + " -o " + tmp + "/r.json --output-requests " + tmp + "/q.jsonl",
                   &out, &err),
      0)
      << err;
  EXPECT_NE(out.find("| mmlu"), std::string::npos) << out;
  EXPECT_NE(out.find(" - stem"), std::string::npos) << out;
  EXPECT_NE(out.find("  - abstract_algebra"), std::string::npos) << out;
  EXPECT_NE(out.find("pct_stereotype"), std::string::npos) << out;
  EXPECT_NE(err.find("truthfulqa_mc2: its lm-eval config fixes num_fewshot to 0"),
            std::string::npos)
      << err;
  const json r = json::parse(ReadTextFile(tmp + "/r.json"));
  EXPECT_TRUE(r["results"]["mmlu"]["acc,none"].is_number());
  EXPECT_TRUE(r["results"]["mmlu_stem"]["acc,none"].is_number());
  EXPECT_TRUE(r["results"]["mmlu_humanities"]["acc,none"].is_number());
  EXPECT_EQ(r["results"]["mmlu_abstract_algebra"]["n_docs"], 2);
  EXPECT_TRUE(r["groups"].contains("mmlu"));
  EXPECT_TRUE(r["groups"].contains("mmlu_stem"));
  EXPECT_EQ(r["n-shot"]["mmlu"], 5);
  EXPECT_EQ(r["n-shot"]["truthfulqa_mc2"], 0);
  EXPECT_EQ(r["n-shot"]["crows_pairs_english"], 5);
  EXPECT_EQ(r["versions"]["truthfulqa_mc2"], "2.0");
  EXPECT_EQ(r["configs"]["mmlu"]["fewshot_split"], "dev");
  EXPECT_EQ(r["configs"]["mmlu"]["fewshot_config"]["sampler"], "first_n");
  const double mc2 = r["results"]["truthfulqa_mc2"]["acc,none"].get<double>();
  EXPECT_GT(mc2, 0.0);
  EXPECT_LT(mc2, 1.0);
  EXPECT_TRUE(r["results"]["crows_pairs_english"]["likelihood_diff,none"].is_number());
  // The first MMLU request carries the subject's description and 5 dev examples.
  const std::string first = ReadTextFile(tmp + "/q.jsonl");
  const json q = json::parse(first.substr(0, first.find('\n')));
  const std::string ctx = q["context"].get<std::string>();
  EXPECT_EQ(ctx.rfind("The following are multiple choice questions (with answers) about abstract "
                      "algebra.\n\n",
                      0),
            0u)
      << ctx;
  fs::remove_all(tmp);
}

TEST(EvalFewshotCli, MissingFewshotSplitFailsBeforeLoading) {
  std::string out, err;
  EXPECT_NE(test::RunElm("eval --model /nonexistent --tasks arc_easy --num-fewshot 25", &out, &err),
            0);
  EXPECT_NE(err.find("arc_easy_train.jsonl"), std::string::npos) << err;
  EXPECT_NE(test::RunElm("eval --model " + kTiny + " --tasks arc_easy --data bogus", &out, &err),
            0);
  EXPECT_NE(err.find("expected TASK=FILE"), std::string::npos) << err;
  EXPECT_NE(test::RunElm("eval --model " + kTiny + " --tasks race --data-dir " +
                             test::TempDir("eval_fewshot_none"),
                         &out, &err),
            0);
  EXPECT_NE(err.find("task race: no data"), std::string::npos) << err;
  EXPECT_NE(err.find("EleutherAI/race"), std::string::npos) << err;
}

}  // namespace eval_fewshot_cli_test
}  // namespace elm

namespace elm {
namespace eval_fewshot_cli_test {

// The paper's headline suite end to end on the made-up rows: every task at its card shots, the
// card's table and the "suite" object of the JSON.
TEST(EvalFewshotCli, OpenllmSuite) {
  const std::string tmp = test::TempDir("eval_suite_cli");
  const std::string f = Fixtures();
  std::string out, err;
  ASSERT_EQ(
      test::RunElm("eval --model " + kTiny + "/ --suite openllm --limit 2 --data-dir " + f +
                       " --data arc_challenge=" + f + "/arc_challenge_hf.jsonl" +
                       " --data hellaswag=" + f + "/hellaswag_validation.jsonl" +
                       " --data winogrande=" + f + "/winogrande_hf.jsonl -o " + tmp + "/r.json",
                   &out, &err),
      0)
      << err;
  EXPECT_NE(out.find("| Model           | ARC-c (25)"), std::string::npos) << out;
  EXPECT_NE(out.find("| tiny-random-32k |"), std::string::npos) << out;
  EXPECT_NE(out.find("WinoGrande (5)"), std::string::npos) << out;
  const json r = json::parse(ReadTextFile(tmp + "/r.json"));
  EXPECT_EQ(r["suite"]["name"], "openllm");
  EXPECT_EQ(r["suite"]["columns"].size(), 5u);
  EXPECT_TRUE(r["suite"]["average"].is_number());
  EXPECT_EQ(r["n-shot"]["arc_challenge"], 25);
  EXPECT_EQ(r["n-shot"]["hellaswag"], 10);
  EXPECT_EQ(r["n-shot"]["mmlu"], 5);
  EXPECT_EQ(r["n-shot"]["winogrande"], 5);
  EXPECT_EQ(r["config"]["suite"], "openllm");

  EXPECT_NE(test::RunElm("eval --model " + kTiny + " --suite openllm --num-fewshot 3", &out, &err),
            0);
  EXPECT_NE(err.find("does not combine"), std::string::npos) << err;
  EXPECT_NE(test::RunElm("eval --model " + kTiny + " --suite nope", &out, &err), 0);
  EXPECT_NE(err.find("unknown suite \"nope\""), std::string::npos) << err;
  fs::remove_all(tmp);
}

}  // namespace eval_fewshot_cli_test
}  // namespace elm

namespace elm {
namespace eval_fewshot_cli_test {

// Few-shot prompts longer than the tiny model's 128-token context are cut on the left as lm-eval
// does, and the prefix cache (shared across a subject's questions) gives what one full forward
// per request gives.
TEST(EvalFewshotCli, LongPromptsTruncateAndMatchPlainForwards) {
  const std::string tmp = test::TempDir("eval_fewshot_trunc");
  std::string out, err;
  const std::string base = "eval --model " + kTiny + " --tasks mmlu,arc_challenge --limit 2 " +
                           "--num-fewshot 5 --data-dir " + Fixtures() +
                           " --data arc_challenge=" + Fixtures() + "/arc_challenge_hf.jsonl";
  ASSERT_EQ(test::RunElm(base + " -o " + tmp + "/a.json --output-requests " + tmp + "/a.jsonl",
                         &out, &err),
            0)
      << err;
  ASSERT_EQ(test::RunElm(base + " --no-prefix-cache -o " + tmp + "/b.json", &out, &err), 0) << err;
  ASSERT_EQ(test::RunElm(base + " --no-batch-choices -o " + tmp + "/c.json", &out, &err), 0) << err;
  const json a = json::parse(ReadTextFile(tmp + "/a.json"));
  EXPECT_EQ(a["config"]["batch_choices"], true);
  for (const char* other : {"/b.json", "/c.json"}) {
    const json b = json::parse(ReadTextFile(tmp + other));
    EXPECT_EQ(b["config"]["batch_choices"], false) << other;
    for (const char* task : {"mmlu", "arc_challenge"}) {
      const auto& da = a["samples"][task];
      const auto& db = b["samples"][task];
      ASSERT_EQ(da.size(), db.size());
      for (size_t i = 0; i < da.size(); ++i)
        for (size_t k = 0; k < da[i]["lls"].size(); ++k)
          EXPECT_NEAR(da[i]["lls"][k].get<double>(), db[i]["lls"][k].get<double>(), 1e-3) << other;
    }
  }
  EXPECT_GT(a["results"]["mmlu"]["tokens_reused_from_cache"].get<int>(), 0);
  size_t longest = 0;
  const std::string lines = ReadTextFile(tmp + "/a.jsonl");
  for (size_t at = 0; at < lines.size();) {
    const size_t nl = lines.find('\n', at);
    const json q = json::parse(lines.substr(at, nl - at));
    longest = std::max(longest, q["context_ids"].size() + q["continuation_ids"].size());
    at = nl + 1;
  }
  EXPECT_GT(longest, 129u);  // longer than max_length + 1: the scorer truncated it
  fs::remove_all(tmp);
}

}  // namespace eval_fewshot_cli_test
}  // namespace elm
