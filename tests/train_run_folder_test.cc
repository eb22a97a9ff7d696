// Runs are never clobbered (docs/training.md, "Run folders"): `elm train` refuses a run folder
// that holds a run unless --resume or --overwrite; --overwrite deletes only elm's own files; a
// resume from an earlier checkpoint replaces the later steps (log and checkpoints); the resume
// hint names the checkpoint --resume will use; `elm plot` draws a rewound log as one run; an
// unknown key in elm's own config block is an error with "did you mean", other unknown keys are
// warned about even with --quiet, and the CoreNet keys elm does not use are one note line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/mmap_file.h"
#include "report/loss_plot.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "train/run_folder.h"
#include "train/train_config.h"

namespace elm {
namespace train_run_folder_test {
namespace fs = std::filesystem;

size_t Count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

std::vector<int64_t> LogSteps(const std::string& path) {
  std::vector<int64_t> steps;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) steps.push_back(j["step"].get<int64_t>());
  }
  return steps;
}

class RunFolder : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::TempDir("run_folder");
    yaml_ = dir_ + "/tiny.yaml";
    std::ofstream(yaml_) << test::TinyTrainYaml(dir_, /*save_every=*/2, /*val_batches=*/1,
                                                /*keep_last_checkpoints=*/0);
    run_ = dir_ + "/results/run";
  }
  void TearDown() override { fs::remove_all(dir_); }
  int Train(const std::string& extra, std::string* out, std::string* err) const {
    return test::RunElm("train --quiet -t 1 --config " + yaml_ + " " + extra, out, err);
  }
  std::string dir_, yaml_, run_;
};

TEST_F(RunFolder, ASecondRunIsRefusedUnlessResumedOrOverwritten) {
  std::string out, err;
  ASSERT_EQ(Train("--set elm.max_steps=4", &out, &err), 0) << err;
  const std::string log = ReadTextFile(run_ + "/train_log.jsonl");
  EXPECT_EQ(LogSteps(run_ + "/train_log.jsonl"), (std::vector<int64_t>{1, 2, 3, 4}));
  // The final summary names the exact checkpoint.
  EXPECT_NE(out.find("checkpoint: " + run_ + "/checkpoints/step_00000004"), std::string::npos)
      << out;

  // Again without --resume: refused, naming the folder and both ways on; nothing touched.
  EXPECT_NE(Train("--set elm.max_steps=2", &out, &err), 0);
  EXPECT_NE(err.find("the run folder " + run_ + " already holds a run"), std::string::npos) << err;
  EXPECT_NE(err.find("--resume " + run_), std::string::npos) << err;
  EXPECT_NE(err.find("--overwrite"), std::string::npos) << err;
  EXPECT_EQ(ReadTextFile(run_ + "/train_log.jsonl"), log);
  EXPECT_EQ(ListCheckpoints(run_ + "/checkpoints").size(), 2u);
  // Both at once make no sense.
  EXPECT_NE(Train("--resume " + run_ + " --overwrite", &out, &err), 0);

  // Resumed from the earlier checkpoint: the later steps are replaced, in the log and on disk, so
  // a later --resume of the run folder continues this run.
  ASSERT_EQ(
      Train("--set elm.max_steps=3 --resume " + run_ + "/checkpoints/step_00000002", &out, &err), 0)
      << err;
  EXPECT_EQ(LogSteps(run_ + "/train_log.jsonl"), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(FindLatestCheckpoint(run_), run_ + "/checkpoints/step_00000003");
  EXPECT_FALSE(fs::exists(run_ + "/checkpoints/step_00000004"));
  ASSERT_EQ(Train("--set elm.max_steps=5 --resume " + run_, &out, &err), 0) << err;
  EXPECT_NE(out.find("trained steps 3..5"), std::string::npos) << out;
  EXPECT_EQ(LogSteps(run_ + "/train_log.jsonl"), (std::vector<int64_t>{1, 2, 3, 4, 5}));

  // --overwrite starts over.
  ASSERT_EQ(Train("--set elm.max_steps=2 --overwrite", &out, &err), 0) << err;
  EXPECT_NE(out.find("trained steps 0..2"), std::string::npos) << out;
  EXPECT_EQ(LogSteps(run_ + "/train_log.jsonl"), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(FindLatestCheckpoint(run_), run_ + "/checkpoints/step_00000002");
  EXPECT_EQ(ListCheckpoints(run_ + "/checkpoints").size(), 1u);

  // ... but never deletes a file elm did not write.
  std::ofstream(run_ + "/notes.txt") << "mine";
  EXPECT_NE(Train("--set elm.max_steps=2 --overwrite", &out, &err), 0);
  EXPECT_NE(err.find("notes.txt"), std::string::npos) << err;
  EXPECT_EQ(ReadTextFile(run_ + "/notes.txt"), "mine");
  EXPECT_TRUE(fs::exists(run_ + "/train_log.jsonl"));
}

// Ctrl-C: the run saves a checkpoint and the hint names that very checkpoint, which is the one
// `--resume <run folder>` continues from.
TEST_F(RunFolder, InterruptHintNamesTheCheckpoint) {
  std::string out, err;
  const std::string log = run_ + "/train_log.jsonl";
  const std::string cmd =
      "(" + std::string(ELM_BINARY) + " train --quiet -t 1 --config " + yaml_ +
      " --set scheduler.max_iterations=100000 --set common.save_interval_freq=100000 & pid=$!; "
      "for i in $(seq 600); do [ -s " +
      log +
      " ] && break; sleep 0.1; done; "
      "kill -INT $pid; wait $pid)";
  ASSERT_EQ(test::RunShell(cmd, &out, &err), 0) << err;
  const std::string hint = "continue with --resume ";
  const size_t at = err.find(hint);
  ASSERT_NE(at, std::string::npos) << err;
  const std::string named = err.substr(at + hint.size(), err.find('\n', at) - at - hint.size());
  EXPECT_EQ(named, FindLatestCheckpoint(run_)) << err;
  EXPECT_TRUE(fs::exists(named + "/DONE")) << named;
  EXPECT_NE(named.find(run_ + "/checkpoints/step_"), std::string::npos) << named;
}

TEST(RunFolderContents, EmptyCheckpointsFolderCountsAsEmpty) {
  const std::string dir = test::TempDir("run_folder_contents");
  EXPECT_EQ(RunFolderContents(dir + "/absent"), "");
  fs::create_directories(dir + "/run/checkpoints");
  EXPECT_EQ(RunFolderContents(dir + "/run"), "");
  EXPECT_NO_THROW(PrepareRunFolder(dir + "/run", false, false));
  fs::create_directories(dir + "/run/checkpoints/step_00000002");
  std::ofstream(dir + "/run/train_log.jsonl") << "{}\n";
  EXPECT_EQ(RunFolderContents(dir + "/run"), "checkpoints/step_00000002, train_log.jsonl");
  EXPECT_THROW(PrepareRunFolder(dir + "/run", false, false), Error);
  EXPECT_NO_THROW(PrepareRunFolder(dir + "/run", true, false));  // resuming
  PrepareRunFolder(dir + "/run", false, true);
  EXPECT_EQ(RunFolderContents(dir + "/run"), "");
  fs::remove_all(dir);
}

TEST_F(RunFolder, ConfigKeys) {
  std::string out, err;
  // A typo in elm's own block stops the run before it starts, --quiet or not.
  EXPECT_NE(Train("--set elm.max_step=2", &out, &err), 0);
  EXPECT_NE(err.find("unknown key 'elm.max_step' in elm's own block; did you mean "
                     "'elm.max_steps'?"),
            std::string::npos)
      << err;
  EXPECT_FALSE(fs::exists(run_));
  // Other unknown keys: a warning, with the closest key, even with --quiet.
  ASSERT_EQ(Train("--set elm.max_steps=1 --set common.log_freqq=2", &out, &err), 0) << err;
  EXPECT_NE(err.find("common.log_freqq (did you mean common.log_freq?)"), std::string::npos) << err;
  // CoreNet keys without effect: one note line, by section (not shown with --quiet).
  EXPECT_EQ(err.find("note:"), std::string::npos) << err;
  ASSERT_EQ(test::RunElm("train --overwrite --config " + yaml_ +
                             " --set elm.max_steps=1 --set ddp.enable=true --set ddp.rank=0 "
                             "--set dataset.workers=4",
                         &out, &err),
            0)
      << err;
  EXPECT_EQ(Count(err, "note:"), 1u) << err;
  EXPECT_NE(err.find("note: 3 CoreNet key(s) have no effect in elm: "), std::string::npos) << err;
  EXPECT_NE(err.find("ddp.{enable, rank}"), std::string::npos) << err;
  EXPECT_NE(err.find("dataset.workers"), std::string::npos) << err;
}

TEST(TrainConfigKeys, ElmBlockTypoIsAnErrorWithTheClosestKey) {
  const std::string dir = test::TempDir("train_keys");
  const std::string yaml = test::TinyTrainYaml(dir, 2, 1, 1);
  try {
    ParseTrainConfig(yaml, "t.yaml", {"elm.val_fractoin=0.1"});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("t.yaml: unknown key 'elm.val_fractoin'"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("did you mean 'elm.val_fraction'?"), std::string::npos)
        << e.what();
  }
  const TrainConfig c = ParseTrainConfig(yaml, "t.yaml", {"optim.adamw.betta1=0.8"});
  ASSERT_EQ(c.unknown_keys.size(), 1u);
  EXPECT_EQ(c.unknown_keys[0], "optim.adamw.betta1");
  ASSERT_EQ(c.unknown_key_hints.size(), 1u);
  EXPECT_EQ(c.unknown_key_hints[0], "optim.adamw.beta1");
  fs::remove_all(dir);
}

// A log whose steps go back (a resume that kept the later lines) draws as one run: the records
// from the rewound step on replace the earlier ones; missing steps break the line.
TEST(LossPlot, RewoundLogIsOneRunAndGapsBreakTheLine) {
  const std::string dir = test::TempDir("loss_plot");
  const std::string log = dir + "/train_log.jsonl";
  std::ofstream(log) << R"({"step": 1, "loss": 5.0}
{"step": 2, "loss": 4.0}
{"step": 3, "loss": 3.9}
{"step": 3, "val_loss": 4.1}
{"step": 4, "loss": 3.8}
{"step": 2, "loss": 4.5}
{"step": 3, "loss": 4.4}
{"step": 3, "val_loss": 4.6}
)";
  LossSeries s = ReadLossSeries(log);
  EXPECT_EQ(s.train_step, (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(s.train_loss, (std::vector<double>{5.0, 4.5, 4.4}));
  EXPECT_EQ(s.val_loss, (std::vector<double>{4.6}));
  EXPECT_EQ(Count(LossPlotSvg(s, "t"), " M"), 0u);  // one unbroken line per path

  std::ofstream(log) << R"({"step": 1, "loss": 5.0}
{"step": 2, "loss": 4.0}
{"step": 3, "loss": 3.9}
{"step": 20, "loss": 3.0}
{"step": 21, "loss": 2.9}
)";
  s = ReadLossSeries(log);
  EXPECT_EQ(Count(LossPlotSvg(s, "t"), " M"), 2u);  // the raw loss and its average both break
  fs::remove_all(dir);
}

}  // namespace train_run_folder_test
}  // namespace elm
