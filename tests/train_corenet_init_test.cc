// elm train --init-from a CoreNet training checkpoint (docs/training.md, "Continuing a CoreNet
// run"): the weights, AdamW moments and step come from the .pt; the run continues at that step.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "base/dtype.h"
#include "base/mmap_file.h"
#include "config/hf_config.h"
#include "io/corenet_checkpoint.h"
#include "io/model_source.h"
#include "io/pytorch_checkpoint.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "train/params.h"
#include "train/text_sources.h"
#include "train/train_config.h"
#include "train/trainer.h"

namespace elm {
namespace train_corenet_init_test {
namespace fs = std::filesystem;

// A CoreNet training checkpoint of tests/data/pytorch (tests/tools/make_pytorch_fixtures.py):
// its HF config, its model as a CoreNet YAML's general_gpt (keeping the 384 padded embedding
// rows), its AdamW step and "iterations", and how many steps a test run takes in all.
struct Fixture {
  std::string pt;
  std::string config_json;
  std::string general_gpt;
  int64_t adamw_step;
  int64_t iterations;
  int max_iterations;
};

// 2 layers, conformance folder a's weights, one AdamW step.
Fixture Tiny() {
  return {test::DataDir() + "/pytorch/a_tiny_corenet_train_bf16.pt",
          test::DataDir() + "/conformance/a_tiny_qknorm_tied/config.json",
          "{num_transformer_layers: 2, model_dim: 64, head_dim: 16, num_gqa_groups: 2, "
          "qkv_multipliers: [0.5, 1.0], ffn_multipliers: [0.5, 4.0], ffn_dim_divisor: 16, "
          "vocab_size: 384, max_context_length: 128}",
          1,
          5000,
          4};
}

// 4 layers with layer-wise scaling (query heads 2, 2, 4, 4; KV heads 1, 1, 2, 2; FFN 32, 64,
// 96, 128), random weights, three AdamW steps.
Fixture Mid() {
  return {test::DataDir() + "/pytorch/d_mid_corenet_train_bf16.pt",
          test::DataDir() + "/pytorch/d_mid_config.json",
          "{num_transformer_layers: 4, model_dim: 64, head_dim: 16, num_gqa_groups: 2, "
          "qkv_multipliers: [0.25, 1.0], ffn_multipliers: [0.5, 2.0], ffn_dim_divisor: 16, "
          "vocab_size: 384, max_context_length: 128}",
          3,
          15000,
          6};
}

std::string TrainPt() {
  return Tiny().pt;
}

TEST(CoreNetInit, AdamWMomentsAndStepLoadBitForBit) {
  for (const Fixture& f : {Tiny(), Mid()}) {
    SCOPED_TRACE(f.pt);
    ParamSet ps(LoadHfConfig(f.config_json));
    ps.AllocateTrainingState();
    const CoreNetSteps steps = LoadCoreNetAdamW(ps, f.pt);
    EXPECT_EQ(steps.adamw_step, f.adamw_step);  // the steps the fixture took
    EXPECT_EQ(steps.iterations, f.iterations);  // and its "iterations"
    const PyTorchCheckpoint ckpt(f.pt);
    const CoreNetAdamW adam = ReadCoreNetAdamW(ckpt);
    ASSERT_EQ(adam.params.size(), ps.tensors().size());
    for (const CoreNetAdamWParam& p : adam.params) {
      SCOPED_TRACE(p.name);
      const SlabTensor* t = ps.Find(HfNameOfCoreNet(p.name));
      ASSERT_NE(t, nullptr);
      const TensorView m = ckpt.View(*p.exp_avg, "m"), v = ckpt.View(*p.exp_avg_sq, "v");
      ASSERT_EQ(m.dtype, DType::kF32);
      // The embedding's moments keep their first rows (the config has 256 of the 384).
      EXPECT_EQ(std::memcmp(ps.m.data() + t->offset, m.data, t->numel * 4), 0);
      EXPECT_EQ(std::memcmp(ps.v.data() + t->offset, v.data, t->numel * 4), 0);
    }
  }
  // A model file has no optimizer state: moments untouched, step 0.
  ParamSet ps(LoadHfConfig(Tiny().config_json));
  ps.AllocateTrainingState();
  const CoreNetSteps none =
      LoadCoreNetAdamW(ps, test::DataDir() + "/pytorch/a_tiny_corenet_f32.pt");
  EXPECT_EQ(none.adamw_step, 0);
  EXPECT_EQ(none.iterations, 0);
}

// A run config in `dir`: the fixture's shape, keeping CoreNet's padded embedding (384 rows, as
// 32128 in Apple's configs); a 267-token tokenizer and a token shard stand in for real data,
// packed into some 235 samples so that where the loader starts changes the steps.
std::string WriteRun(const std::string& dir, const Fixture& f) {
  std::vector<int32_t> tokens;
  uint32_t x = 12345;
  for (int i = 0; i < 4000; ++i) {
    x = x * 1664525u + 1013904223u;
    tokens.push_back(static_cast<int32_t>(3 + (x >> 16) % 250));
  }
  WriteTokenShard(dir + "/tokens.bin", tokens);
  const std::string yaml = dir + "/tiny.yaml";
  std::ofstream(yaml)
      << "common: {results_loc: \"" << dir << "/results\", run_label: run, seed: 3}\n"
      << "dataset:\n  train_batch_size0: 2\n  language_modeling:\n    sequence_length: 16\n"
      << "    general_lm: {train_data_info: [{file_name: \"" << dir << "/tokens.bin\"}]}\n"
      << "scheduler: {max_iterations: " << f.max_iterations
      << ", warmup_iterations: 1, cosine: {max_lr: 0.001, min_lr: 0.0001}}\n"
      << "model:\n  language_modeling:\n    general_gpt: " << f.general_gpt << "\n"
      << "elm: {packing: packed, tokenizer: \"" << test::DataDir()
      << "/pytorch/tiny_tokenizer.json\"}\n";
  return yaml;
}

std::string WriteTinyRun(const std::string& dir) {
  return WriteRun(dir, Tiny());
}

// The CLI: a run initialized from the training checkpoint starts at AdamW's step (1) and takes
// the following steps.
TEST(CoreNetInit, TrainContinuesTheRunAtItsStep) {
  const std::string dir = test::TempDir("corenet_init");
  const std::string yaml = WriteTinyRun(dir);
  std::string out, err;
  ASSERT_EQ(test::RunElm("train --config " + yaml + " --init-from " + TrainPt(), &out, &err), 0)
      << err;
  EXPECT_NE((out + err).find("continuing the CoreNet run"), std::string::npos) << out << err;
  // From step 1 (a fresh run says 0..4); the log's first record is step 2.
  EXPECT_NE(out.find("trained steps 1..4"), std::string::npos) << out;
  std::ifstream log(dir + "/results/run/train_log.jsonl");
  std::string line;
  while (std::getline(log, line) && line.find("\"loss\"") == std::string::npos) {
  }
  EXPECT_NE(line.find("\"step\":2,"), std::string::npos) << line;
  fs::remove_all(dir);
}

// The step records of a run's train_log.jsonl, by step (the validation lines have no "loss").
std::map<int64_t, nlohmann::json> StepRecords(const std::string& log_path) {
  std::map<int64_t, nlohmann::json> out;
  std::ifstream log(log_path);
  std::string line;
  while (std::getline(log, line)) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j.contains("loss")) out[j.at("step").get<int64_t>()] = j;
  }
  return out;
}

// A checkpoint folder's name: step_00000004.
std::string StepDir(int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step_%08lld", static_cast<long long>(step));
  return name;
}

// Continuing a CoreNet training checkpoint is resuming: `elm train --init-from CKPT.pt` takes the
// same next steps as `elm train --resume` of an elm checkpoint holding the same state (the .pt's
// weights as f32, its AdamW moments, AdamW's step, the loader at its first sample: what
// docs/training.md, "Continuing a CoreNet run", says a continued run starts with), bit for bit.
void ExpectContinuingIsResuming(const Fixture& f, const std::string& dir) {
  const std::string yaml = WriteRun(dir, f);
  std::string out, err;
  ASSERT_EQ(test::RunElm("train --quiet --config " + yaml +
                             " --set common.run_label=corenet --init-from " + f.pt,
                         &out, &err),
            0)
      << err;
  // The fixture's "iterations" is not AdamW's step: elm says which it continues at.
  const std::string step = std::to_string(f.adamw_step);
  EXPECT_NE(err.find("its 'iterations' is " + std::to_string(f.iterations) +
                     " but AdamW's step is " + step + "; elm continues at AdamW's step " + step),
            std::string::npos)
      << err;

  // The same state, written with elm's own checkpoint API.
  const TrainConfig cfg = LoadTrainConfig(yaml, {"common.run_label=elm"});
  ParamSet ps(cfg.model);
  ps.AllocateTrainingState();
  SourceOptions so;
  so.for_conversion = false;
  so.config = cfg.model;
  LoadParams(ps, OpenModelSource(f.pt, so));
  TrainerState st;
  st.step = LoadCoreNetAdamW(ps, f.pt).adamw_step;
  st.data = {0, 0};  // CoreNet's data order is not carried over: the loader's first sample
  st.seed = cfg.seed;
  st.fingerprint = CheckpointFingerprint(cfg);
  const std::string saved = SaveCheckpoint(dir + "/elm_state", ps, st, cfg.tokenizer);
  ASSERT_EQ(fs::path(saved).filename(), StepDir(f.adamw_step));
  ASSERT_EQ(test::RunElm("train --quiet --config " + yaml +
                             " --set common.run_label=elm --resume " + dir + "/elm_state",
                         &out, &err),
            0)
      << err;

  // The following steps: the same losses, learning rates, gradient norms and tokens, bit for
  // bit (the log writes doubles so that they read back exactly).
  const std::string a = dir + "/results/corenet", b = dir + "/results/elm";
  const auto ra = StepRecords(a + "/train_log.jsonl"), rb = StepRecords(b + "/train_log.jsonl");
  const auto steps = static_cast<size_t>(f.max_iterations - f.adamw_step);
  ASSERT_EQ(ra.size(), steps);
  ASSERT_EQ(rb.size(), steps);
  for (int64_t s = f.adamw_step + 1; s <= f.max_iterations; ++s) {
    SCOPED_TRACE(s);
    ASSERT_TRUE(ra.count(s) && rb.count(s));
    for (const char* key : {"loss", "lr", "grad_norm", "tokens"}) {
      SCOPED_TRACE(key);
      ASSERT_TRUE(ra.at(s).contains(key));
      EXPECT_EQ(ra.at(s).at(key), rb.at(s).at(key));
    }
  }
  // The final checkpoints: the same weights, moments and trainer state, byte for byte.
  const std::string last = "/checkpoints/" + StepDir(f.max_iterations);
  for (const char* file : {"model.safetensors", "optimizer.safetensors", "trainer_state.json"}) {
    SCOPED_TRACE(file);
    EXPECT_TRUE(ReadTextFile(a + last + "/" + file) == ReadTextFile(b + last + "/" + file));
  }
}

TEST(CoreNetInit, ContinuingIsResumingTheSameStateInElmsOwnCheckpoint) {
  const std::string dir = test::TempDir("corenet_vs_elm");
  ExpectContinuingIsResuming(Tiny(), dir);
  fs::remove_all(dir);
}

// The same for the mid shape: more layers, each with its own heads, KV heads and FFN width.
TEST(CoreNetInit, ContinuingALayerWiseScaledRunIsResumingToo) {
  const std::string dir = test::TempDir("corenet_vs_elm_mid");
  ExpectContinuingIsResuming(Mid(), dir);
  fs::remove_all(dir);
}

}  // namespace train_corenet_init_test
}  // namespace elm
