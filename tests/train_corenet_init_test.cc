// elm train --init-from a CoreNet training checkpoint (docs/training.md, "Continuing a CoreNet
// run"): the weights, AdamW moments and step come from the .pt; the run continues at that step.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "base/dtype.h"
#include "config/hf_config.h"
#include "io/corenet_checkpoint.h"
#include "io/pytorch_checkpoint.h"
#include "test_util.h"
#include "train/params.h"
#include "train/text_sources.h"

namespace elm {
namespace {
namespace fs = std::filesystem;

std::string TrainPt() {
  return test::DataDir() + "/pytorch/a_tiny_corenet_train_bf16.pt";
}

TEST(CoreNetInit, AdamWMomentsAndStepLoadBitForBit) {
  ParamSet ps(LoadHfConfig(test::DataDir() + "/conformance/a_tiny_qknorm_tied/config.json"));
  ps.AllocateTrainingState();
  EXPECT_EQ(LoadCoreNetAdamW(ps, TrainPt()), 1);  // the fixture took one AdamW step
  const PyTorchCheckpoint ckpt(TrainPt());
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
  // A model file has no optimizer state: moments untouched, step 0.
  EXPECT_EQ(LoadCoreNetAdamW(ps, test::DataDir() + "/pytorch/a_tiny_corenet_f32.pt"), 0);
}

// The CLI: a run initialized from the training checkpoint starts at AdamW's step (1) and takes
// the following steps. The config keeps CoreNet's padded embedding (384 rows, as 32128 in
// Apple's configs); a 267-token tokenizer and a token shard stand in for real data.
TEST(CoreNetInit, TrainContinuesTheRunAtItsStep) {
  const std::string dir = test::TempDir("corenet_init");
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
      << "scheduler: {max_iterations: 4, warmup_iterations: 1, cosine: {max_lr: 0.001, "
         "min_lr: 0.0001}}\n"
      << "model:\n  language_modeling:\n    general_gpt: {num_transformer_layers: 2, model_dim: "
         "64, head_dim: 16, num_gqa_groups: 2, qkv_multipliers: [0.5, 1.0], ffn_multipliers: "
         "[0.5, 4.0], ffn_dim_divisor: 16, vocab_size: 384, max_context_length: 128}\n"
      << "elm: {tokenizer: \"" << test::DataDir() << "/pytorch/tiny_tokenizer.json\"}\n";
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

}  // namespace
}  // namespace elm
