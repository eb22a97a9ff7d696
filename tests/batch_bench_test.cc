// `elm bench --streams` (bench/batch_bench.h): batched decode steps timed without HTTP. The
// numbers are the machine's; these tests check the shape of the result and of the CLI's output
// and the errors, never a speed (docs/performance.md measures speed).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.h"
#include "bench/batch_bench.h"
#include "model/model.h"
#include "test_util.h"

namespace elm {
namespace batch_bench_test {

const std::string kTinyModel = test::DataDir() + "/conformance/a_tiny_qknorm_tied";

TEST(BatchBench, OneStreamAlwaysFirstAndRowsSorted) {
  const auto model = Model::Load(kTinyModel);
  BatchBenchOptions o;
  o.streams = {3, 2, 3};
  o.steps = 2;
  o.depth = 4;
  o.repetitions = 2;
  const auto rows = RunBatchBench(model, o);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].streams, 1);
  EXPECT_EQ(rows[1].streams, 2);
  EXPECT_EQ(rows[2].streams, 3);
  EXPECT_DOUBLE_EQ(rows[0].step_over_single, 1.0);
  EXPECT_DOUBLE_EQ(rows[0].speedup, 1.0);
  for (const auto& r : rows) {
    EXPECT_EQ(r.step_ms.samples.size(), 2u);
    EXPECT_GT(r.step_ms.mean, 0);
    EXPECT_GT(r.best_step_ms, 0);
    EXPECT_LE(r.best_step_ms, r.step_ms.mean);
    EXPECT_GE(r.cpu_ms.mean, 0);
    EXPECT_NEAR(r.tokens_per_s, 1e3 * r.streams / r.step_ms.mean, 1e-6 * r.tokens_per_s);
    EXPECT_NEAR(r.step_over_single, r.step_ms.mean / rows[0].step_ms.mean, 1e-9);
    EXPECT_NEAR(r.speedup, r.tokens_per_s / rows[0].tokens_per_s, 1e-9);
  }
}

TEST(BatchBench, SummarizeSamplesMeanAndSampleSd) {
  const Stat s = SummarizeSamples({1.0, 2.0, 3.0});
  EXPECT_DOUBLE_EQ(s.mean, 2.0);
  EXPECT_DOUBLE_EQ(s.sd, 1.0);
  EXPECT_EQ(s.samples, (std::vector<double>{1.0, 2.0, 3.0}));
  EXPECT_DOUBLE_EQ(SummarizeSamples({4.0}).sd, 0.0);
  EXPECT_DOUBLE_EQ(SummarizeSamples({}).mean, 0.0);
}

TEST(BatchBench, BadOptionsAreRefused) {
  const auto model = Model::Load(kTinyModel);
  BatchBenchOptions o;
  o.streams = {0};
  EXPECT_THROW(RunBatchBench(model, o), Error);
  o.streams = {2};
  o.steps = 0;
  EXPECT_THROW(RunBatchBench(model, o), Error);
  o.steps = 1;
  o.depth = -1;
  EXPECT_THROW(RunBatchBench(model, o), Error);
  o.depth = 0;
  o.repetitions = 0;
  EXPECT_THROW(RunBatchBench(model, o), Error);
}

TEST(BatchBench, CliPrintsTableAndJson) {
  std::string out, err;
  ASSERT_EQ(test::RunElm("bench --model " + kTinyModel +
                             " --threads 1 --streams 2 --streams 4 -n 2 -r 1 --json",
                         &out, &err),
            0)
      << err;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["steps"], 2);
  EXPECT_EQ(j["depth"], 0);
  ASSERT_EQ(j["streams"].size(), 3u);
  EXPECT_EQ(j["streams"][0]["streams"], 1);
  EXPECT_EQ(j["streams"][2]["streams"], 4);
  for (const char* key : {"step_ms", "step_ms_sd", "best_step_ms", "cpu_ms", "tokens_per_s",
                          "step_over_single", "speedup"})
    EXPECT_TRUE(j["streams"][1].contains(key)) << key;

  ASSERT_EQ(test::RunElm("bench --model " + kTinyModel + " --threads 1 --streams 2 -n 2 -r 1", &out,
                         &err),
            0)
      << err;
  EXPECT_NE(out.find("step / 1-row"), std::string::npos) << out;
  EXPECT_NE(out.find("\n2 "), std::string::npos) << out;

  EXPECT_NE(test::RunElm("bench --model " + kTinyModel + " --streams 0 -n 2 -r 1", &out, &err), 0);
  EXPECT_NE(err.find("stream count must be at least 1"), std::string::npos) << err;
}

}  // namespace batch_bench_test
}  // namespace elm
