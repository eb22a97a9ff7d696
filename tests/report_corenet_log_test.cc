// CoreNet's training log read by `elm plot` (docs/training.md, "Plotting CoreNet's logs").
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "base/mmap_file.h"
#include "report/corenet_log.h"
#include "report/loss_plot.h"
#include "test_util.h"

namespace elm {
namespace report_corenet_log_test {
namespace fs = std::filesystem;

// Lines as corenet-train prints them: the logger's timestamp and coloured tag, the iteration
// summary of Statistics.iter_summary (a dict loss, then a plain one), a validation summary, an
// EMA validation summary (skipped) and unrelated lines.
const char* kCoreNetLog =
    "2024-04-10 09:00:01 - \x1b[34m\x1b[1mLOGS   \x1b[0m - Random seeds are set to 0\n"
    "2024-04-10 09:00:05 - \x1b[34m\x1b[1mLOGS   \x1b[0m - Epoch:   0 [       1/  350000], loss: "
    "{'total_loss': 10.8012, 'ce_loss': 10.7, 'z_loss': 0.1012}, grad_norm: 3.2, LR: "
    "[1e-06, 1e-06], Avg. batch load time: 0.512, Elapsed time:  4.01\n"
    "2024-04-10 09:10:05 - \x1b[34m\x1b[1mLOGS   \x1b[0m - Epoch:   0 [    5000/  350000], loss: "
    "{'total_loss': 4.25, 'ce_loss': 4.2, 'z_loss': 0.05}, grad_norm: 0.4, LR: [0.0053, "
    "0.0053], Avg. batch load time: 0.001, Elapsed time: 600.00\n"
    "2024-04-10 09:10:06 - \x1b[34m\x1b[1mLOGS   \x1b[0m - *** Validation summary for epoch 0\n"
    "\t loss={'total_loss': 4.5, 'ce_loss': 4.4} || top1=12.0\n"
    "2024-04-10 09:10:07 - \x1b[34m\x1b[1mLOGS   \x1b[0m - *** Validation (EMA) summary for "
    "epoch 0\n"
    "\t loss={'total_loss': 4.4}\n"
    "2024-04-10 09:20:05 - \x1b[34m\x1b[1mLOGS   \x1b[0m - Epoch:   1 [   10000/  350000], loss: "
    "3.5, LR: 0.005100, Avg. batch load time: 0.001, Elapsed time: 600.00\n";

TEST(CoreNetLog, IterationSummariesAndValidationBecomeSeries) {
  const std::string dir = test::TempDir("corenet_log");
  const std::string log = dir + "/train.log";
  std::ofstream(log) << kCoreNetLog;
  ASSERT_TRUE(LooksLikeCoreNetLog(log));
  const LossSeries s = ReadLossSeries(log);  // detected from the lines
  EXPECT_EQ(s.train_step, (std::vector<double>{1, 5000, 10000}));
  EXPECT_EQ(s.train_loss, (std::vector<double>{10.8012, 4.25, 3.5}));
  EXPECT_EQ(s.val_step, (std::vector<double>{5000}));
  EXPECT_EQ(s.val_loss, (std::vector<double>{4.5}));
  // elm's own log is not taken for CoreNet's; a file with neither is an error naming it.
  const std::string jsonl = dir + "/train_log.jsonl";
  std::ofstream(jsonl) << "{\"step\": 1, \"loss\": 5.0}\n{\"step\": 2, \"loss\": 4.0}\n";
  EXPECT_FALSE(LooksLikeCoreNetLog(jsonl));
  std::ofstream(dir + "/none.log") << "Epoch: nothing here\n";
  EXPECT_THROW(ReadCoreNetLog(dir + "/none.log"), Error);
  fs::remove_all(dir);
}

TEST(CoreNetLog, PlotDrawsCoreNetAndElmRunsOnOneChart) {
  const std::string dir = test::TempDir("corenet_plot");
  std::ofstream(dir + "/apple.log") << kCoreNetLog;
  std::ofstream(dir + "/train_log.jsonl") << "{\"step\": 1, \"loss\": 9.0}\n"
                                             "{\"step\": 4000, \"loss\": 4.0}\n"
                                             "{\"step\": 4000, \"val_loss\": 4.2}\n";
  std::string out, err;
  ASSERT_EQ(test::RunElm("plot --log " + dir + "/apple.log --log " + dir +
                             "/train_log.jsonl --label 'CoreNet (Apple)' --label elm --output " +
                             dir + "/both.svg",
                         &out, &err),
            0)
      << err;
  EXPECT_NE(out.find("5 training points, 2 validation points"), std::string::npos) << out;
  const std::string svg = ReadTextFile(dir + "/both.svg");
  EXPECT_NE(svg.find("CoreNet (Apple): train loss (smoothed)"), std::string::npos);
  EXPECT_NE(svg.find("CoreNet (Apple): validation loss"), std::string::npos);
  EXPECT_NE(svg.find("elm: train loss (smoothed)"), std::string::npos);
  EXPECT_NE(svg.find("#ff7f0e"), std::string::npos);  // the second run's colour
  EXPECT_NE(test::RunElm(
                "plot --log " + dir + "/apple.log --label a --label b --output " + dir + "/x.svg",
                &out, &err),
            0);
  EXPECT_NE(err.find("one per --log"), std::string::npos) << err;
  fs::remove_all(dir);
}

}  // namespace report_corenet_log_test
}  // namespace elm
