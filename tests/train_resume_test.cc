// End-to-end training: a run killed halfway and resumed ends with the same bytes as a straight
// run; incomplete checkpoints are ignored; checkpoints load in the inference Model and in the CLI
// (elm generate / info); elm train, elm init and elm plot work from the command line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/mmap_file.h"
#include "model/session.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "train/train_config.h"
#include "train/train_model.h"
#include "train/trainer.h"

namespace elm {
namespace train_resume_test {
namespace fs = std::filesystem;

std::string Bytes(const std::string& path) {
  return ReadTextFile(path);
}

class TrainRun : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::TempDir("train_run");
    yaml_ = dir_ + "/tiny.yaml";
    std::ofstream(yaml_) << test::TinyTrainYaml(dir_, /*save_every=*/2, /*val_batches=*/2,
                                                /*keep_last_checkpoints=*/2);
  }
  void TearDown() override { fs::remove_all(dir_); }
  TrainResult Train(const std::string& label, std::vector<std::string> set,
                    const std::string& resume = "") {
    set.push_back("common.run_label=" + label);
    TrainOptions o;
    o.resume = resume;
    o.verbose = false;
    return RunTraining(LoadTrainConfig(yaml_, set), o);
  }
  std::string dir_, yaml_;
};

TEST_F(TrainRun, KillAndResumeIsBitExact) {
  const TrainResult straight = Train("straight", {});
  EXPECT_EQ(straight.steps, 6);
  EXPECT_LT(straight.final_loss, straight.first_loss);

  const TrainResult half = Train("resumed", {"elm.max_steps=3"});
  EXPECT_EQ(half.steps, 3);
  // A later checkpoint that was being written when the run died: no DONE, must be ignored.
  const std::string run = dir_ + "/results/resumed";
  fs::create_directories(run + "/checkpoints/step_00000005");
  std::ofstream(run + "/checkpoints/step_00000005/model.safetensors") << "partial";
  EXPECT_EQ(FindLatestCheckpoint(run), run + "/checkpoints/step_00000003");
  const TrainResult rest = Train("resumed", {}, run);
  EXPECT_EQ(rest.first_step, 3);
  EXPECT_EQ(rest.steps, 6);

  const std::string a = straight.checkpoint, b = rest.checkpoint;
  ASSERT_EQ(fs::path(a).filename(), "step_00000006");
  ASSERT_EQ(fs::path(b).filename(), "step_00000006");
  EXPECT_TRUE(Bytes(a + "/model.safetensors") == Bytes(b + "/model.safetensors"));
  EXPECT_TRUE(Bytes(a + "/optimizer.safetensors") == Bytes(b + "/optimizer.safetensors"));
  EXPECT_EQ(Bytes(a + "/trainer_state.json"), Bytes(b + "/trainer_state.json"));
  EXPECT_DOUBLE_EQ(straight.final_loss, rest.final_loss);
  EXPECT_DOUBLE_EQ(straight.val_loss, rest.val_loss);
  // keep_last_checkpoints: 2 → steps 4 and 6 remain (and the stale partial folder is gone).
  EXPECT_EQ(ListCheckpoints(run + "/checkpoints").size(), 2u);
  EXPECT_FALSE(fs::exists(run + "/checkpoints/step_00000005"));

  // The resumed log holds each step once, in order, plus the validation lines.
  std::ifstream log(rest.log_path);
  std::string line;
  std::vector<int64_t> steps;
  int val_lines = 0;
  while (std::getline(log, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("val_loss")) {
      ++val_lines;
      continue;
    }
    steps.push_back(j["step"].get<int64_t>());
    for (const char* k : {"loss", "lr", "grad_norm", "tokens_per_s", "mfu"})
      EXPECT_TRUE(j.contains(k)) << k;
  }
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(val_lines, 2);  // steps 3 and 6

  // A checkpoint whose shape differs from the config is refused.
  EXPECT_THROW(Train("resumed", {"model.language_modeling.general_gpt.model_dim=48"}, run), Error);
}

TEST_F(TrainRun, CheckpointLoadsInTheInferenceModel) {
  const TrainResult r = Train("infer", {"elm.max_steps=2"});
  auto model = Model::Load(r.checkpoint);
  EXPECT_EQ(model->config().n_layers, 2);
  TrainModel tm(model->config());
  LoadParams(tm.params(), model->store());
  const std::vector<int> ids = {1, 450, 3438, 338, 263, 2, 29871, 13};
  std::vector<int> tg(ids.size(), 0);
  tm.Forward(ids.data(), tg.data(), 1, static_cast<int>(ids.size()), {});
  Session s(model);
  std::vector<float> logits;
  ForwardOptions fo;
  fo.all_logits = true;
  s.Forward(ids, logits, fo);
  EXPECT_LE(test::MaxAbsDiff(logits.data(), tm.logits(), logits.size()), 1e-4);

  std::string out, err;
  ASSERT_EQ(
      test::RunElm("generate --model " + r.checkpoint + " --prompt 'ROMEO:' -n 4", &out, &err), 0)
      << err;
  ASSERT_EQ(test::RunElm("info --model " + r.checkpoint, &out, &err), 0) << err;
  EXPECT_NE(out.find("layers 2"), std::string::npos) << out;
}

TEST_F(TrainRun, CommandLine) {
  std::string out, err;
  ASSERT_EQ(test::RunElm("train --quiet --config " + yaml_ + " --set elm.max_steps=2 --set " +
                             "common.run_label=cli",
                         &out, &err),
            0)
      << err;
  EXPECT_NE(out.find("trained steps 0..2"), std::string::npos) << out;
  const std::string log = dir_ + "/results/cli/train_log.jsonl";
  ASSERT_EQ(test::RunElm("plot --log " + log + " --output " + dir_ + "/loss.svg", &out, &err), 0)
      << err;
  const std::string svg = ReadTextFile(dir_ + "/loss.svg");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("validation loss"), std::string::npos);

  ASSERT_EQ(
      test::RunElm("init --config " + yaml_ + " --seed 5 --dtype bf16 --output " + dir_ + "/init",
                   &out, &err),
      0)
      << err;
  auto m = Model::Load(dir_ + "/init");
  EXPECT_EQ(m->weights_dtype(), "BF16");
  EXPECT_NE(test::RunElm("train --config " + yaml_ + " --set optim.adamw.beta1=high", &out, &err),
            0);
  EXPECT_NE(err.find("optim.adamw.beta1"), std::string::npos) << err;
  EXPECT_NE(test::RunElm("init --preset OpenELM-9B --output " + dir_ + "/x", &out, &err), 0);
}

}  // namespace train_resume_test
}  // namespace elm
