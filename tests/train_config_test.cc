// CoreNet-style YAML configs (good and bad files), --set overrides, the learning-rate schedule,
// AdamW's update rule and CoreNet's initialization.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "base/error.h"
#include "test_util.h"
#include "train/init.h"
#include "train/optimizer.h"
#include "train/train_config.h"

namespace elm {
namespace train_config_test {

std::string Configs() {
  return std::string(ELM_SOURCE_DIR) + "/configs/";
}

const char* kSmall = R"(
_anchor_len: &len 64
common:
  seed: 7
  grad_clip: 1.0
dataset:
  train_batch_size0: 4
  language_modeling:
    sequence_length: *len
    general_lm:
      train_data_info: [{file_name: "a.txt"}]
loss:
  language_modeling:
    cross_entropy: {ignore_index: 32000, use_z_loss: true}
scheduler:
  max_iterations: 100
  warmup_iterations: 10
  cosine: {max_lr: 0.01, min_lr: 0.001}
model:
  language_modeling:
    general_gpt:
      num_transformer_layers: 3
      model_dim: 64
      head_dim: 16
      num_gqa_groups: 2
      ffn_dim_divisor: 32
      max_context_length: *len
)";

TEST(TrainConfig, ReleasedConfigsParse) {
  for (const char* size : {"270M", "450M", "1_1B", "3B"}) {
    SCOPED_TRACE(size);
    const TrainConfig c =
        LoadTrainConfig(Configs() + "openelm_" + std::string(size) + ".yaml", {}, false);
    EXPECT_EQ(c.model.vocab_size, 32128);  // CoreNet's padded training vocabulary
    EXPECT_EQ(c.model.max_context, 2048);
    EXPECT_EQ(c.seq_len, 2048);
    EXPECT_EQ(c.padding_index, 32000);
    EXPECT_EQ(c.ignore_index, 32000);  // through the YAML anchor
    EXPECT_TRUE(c.use_z_loss);
    EXPECT_EQ(c.schedule.max_iterations, 350000);
    EXPECT_EQ(c.schedule.warmup_iterations, 5000);
    EXPECT_DOUBLE_EQ(c.schedule.warmup_init_lr, 1e-6);
    EXPECT_DOUBLE_EQ(c.adamw.eps, 1e-8);
    EXPECT_DOUBLE_EQ(c.adamw.beta2, 0.95);
    EXPECT_DOUBLE_EQ(c.grad_clip, 1.0);
    EXPECT_EQ(c.batch_size, 16);
    EXPECT_TRUE(c.unknown_keys.empty()) << c.unknown_keys.front();
    EXPECT_FALSE(c.ignored_keys.empty());  // ddp.*, mixed precision, workers...
  }
  const TrainConfig c = LoadTrainConfig(Configs() + "openelm_270M.yaml", {}, false);
  EXPECT_EQ(c.model.n_layers, 16);
  EXPECT_DOUBLE_EQ(c.schedule.max_lr, 0.0053);
  EXPECT_EQ(c.model.layers[15].n_heads, 20);
  EXPECT_EQ(c.train_data.at(0).file_id_end, 5535);
  EXPECT_EQ(c.train_data.at(0).text_key, "content");
  EXPECT_EQ(LoadTrainConfig(Configs() + "openelm_3B.yaml", {}, false).model.head_dim, 128);
}

TEST(TrainConfig, TinyShakespeare) {
  const TrainConfig c = LoadTrainConfig(Configs() + "tiny_shakespeare.yaml");
  EXPECT_TRUE(c.unknown_keys.empty());
  EXPECT_EQ(c.model.n_layers, 4);
  EXPECT_EQ(c.model.vocab_size, 32000);
  EXPECT_LT(c.model.ParamCount(), 6000000);
  // layer-wise scaling: heads and FFN width grow with depth
  EXPECT_LT(c.model.layers[0].n_heads, c.model.layers[3].n_heads);
  EXPECT_LT(c.model.layers[0].ffn_dim, c.model.layers[3].ffn_dim);
  EXPECT_EQ(c.packing, Packing::kAuto);
  EXPECT_GT(c.val_fraction, 0);
}

TEST(TrainConfig, OverridesAndAnchors) {
  const TrainConfig c =
      ParseTrainConfig(kSmall, "small.yaml",
                       {"optim.weight_decay=0.05", "dataset.language_modeling.sequence_length=32",
                        "model.language_modeling.general_gpt.qkv_multipliers=[1.0, 1.0]",
                        "elm.packing=documents", "common.accum_freq=2"});
  EXPECT_DOUBLE_EQ(c.adamw.weight_decay, 0.05);
  EXPECT_EQ(c.seq_len, 32);
  EXPECT_EQ(c.model.max_context, 64);  // the override does not write through the shared anchor
  EXPECT_EQ(c.model.layers[0].n_heads, 4);
  EXPECT_EQ(c.packing, Packing::kDocuments);
  EXPECT_EQ(c.accum_freq, 2);
  EXPECT_EQ(c.tokens_per_step(), 32 * 4 * 2);
  EXPECT_EQ(c.seed, 7u);
  EXPECT_EQ(c.max_steps, 100);
  EXPECT_EQ(c.padding_index, 32000);
}

TEST(TrainConfig, UnknownKeysAreListed) {
  const TrainConfig c =
      ParseTrainConfig(std::string(kSmall) + "optim:\n  adamw:\n    betta1: 0.8\n", "x.yaml",
                       {"common.no_such_key=1"});
  ASSERT_EQ(c.unknown_keys.size(), 2u);
  EXPECT_EQ(c.unknown_keys[0], "common.no_such_key");
  EXPECT_EQ(c.unknown_keys[1], "optim.adamw.betta1");
}

void ExpectError(const std::string& yaml, const std::vector<std::string>& set,
                 const std::string& must_mention) {
  try {
    ParseTrainConfig(yaml, "bad.yaml", set);
    ADD_FAILURE() << "no error; expected one mentioning " << must_mention;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(must_mention), std::string::npos) << e.what();
  }
}

TEST(TrainConfig, BadFilesNameTheKey) {
  ExpectError(kSmall, {"optim.adamw.beta1=abc"}, "optim.adamw.beta1");
  ExpectError(kSmall, {"dataset.train_batch_size0=1.5"}, "dataset.train_batch_size0");
  ExpectError(kSmall, {"common.auto_resume=maybe"}, "common.auto_resume");
  ExpectError(kSmall, {"dataset.train_batch_size0=0"}, "dataset.train_batch_size0");
  ExpectError(kSmall, {"model.language_modeling.general_gpt.qkv_multipliers=[a, b]"},
              "qkv_multipliers");
  ExpectError(kSmall, {"scheduler.name=polynomial"}, "scheduler.name");
  ExpectError(kSmall, {"optim.name=sgd"}, "optim.name");
  ExpectError(kSmall, {"model.language_modeling.general_gpt.model_name=OpenELM-9B"}, "model_name");
  ExpectError(kSmall, {"dataset.language_modeling.sequence_length=128"}, "max_context_length");
  ExpectError(kSmall, {"dataset.language_modeling.general_lm.train_data_info=[]"}, "training data");
  ExpectError(kSmall, {"elm.packing=sometimes"}, "elm.packing");
  ExpectError(kSmall, {"no_equals_sign"}, "key=value");
  ExpectError("model: [1, 2\n", {}, "not valid YAML");
  ExpectError("common:\n  seed: 1\n", {}, "model_name");
}

TEST(TrainConfig, ExpandEnv) {
  ::setenv("ELM_TEST_DATA_ROOT", "/data", 1);
  EXPECT_EQ(ExpandEnv("$ELM_TEST_DATA_ROOT/x/${ELM_TEST_DATA_ROOT}", "k"), "/data/x//data");
  EXPECT_EQ(ExpandEnv("a$", "k"), "a$");
  EXPECT_THROW(ExpandEnv("$ELM_SURELY_UNSET_VARIABLE/x", "k"), Error);
}

TEST(TrainSchedule, CoreNetCosineWithWarmup) {
  LrSchedule s;
  s.max_iterations = 350000;
  s.warmup_iterations = 5000;
  s.warmup_init_lr = 1e-6;
  s.max_lr = 0.0053;
  s.min_lr = 0.00053;
  EXPECT_DOUBLE_EQ(s.At(0), 1e-6);
  EXPECT_DOUBLE_EQ(s.At(2500), 1e-6 + 2500 * (0.0053 - 1e-6) / 5000);
  EXPECT_DOUBLE_EQ(s.At(5000), 0.0053);  // cos(0)
  const double period = 350000 - 5000 + 1;
  EXPECT_DOUBLE_EQ(s.At(100000), 0.00053 + 0.5 * (0.0053 - 0.00053) *
                                               (1 + std::cos(std::numbers::pi * 95000 / period)));
  EXPECT_NEAR(s.At(350000), 0.00053, 1e-9);  // one step short of the full period
  s.name = "fixed";
  EXPECT_DOUBLE_EQ(s.At(9000), 0.0053);
}

TEST(TrainOptimizer, AdamWMatchesTheReferenceFormula) {
  ModelConfig c = PresetConfig("270M");
  c.n_layers = 1, c.dim = 8, c.head_dim = 4, c.gqa_groups = 1, c.vocab_size = 5;
  c.ffn_dim_divisor = 4;
  DeriveLayers(c);
  ParamSet ps(c);
  InitParams(ps, 3);
  ps.AllocateTrainingState();
  for (size_t i = 0; i < ps.size(); ++i) ps.grads[i] = std::sin(static_cast<double>(i)) * 0.1f;
  const SlabFloats p0 = ps.params;
  AdamWParams hp;
  AdamWUpdate(ps, hp, 1e-2, 1);
  AdamWUpdate(ps, hp, 1e-2, 2);
  for (const ParamTensor& t : ps.tensors()) {
    const size_t i = t.offset + t.numel / 2;
    double p = p0[i], m = 0, v = 0;
    const double g = ps.grads[i], wd = t.decay ? 0.1 : 0.0;
    for (int step = 1; step <= 2; ++step) {
      p *= 1 - 1e-2 * wd;
      m = 0.9 * m + 0.1 * g;
      v = 0.95 * v + 0.05 * g * g;
      p -= 1e-2 / (1 - std::pow(0.9, step)) * m /
           (std::sqrt(v) / std::sqrt(1 - std::pow(0.95, step)) + 1e-8);
    }
    EXPECT_NEAR(ps.params[i], p, 1e-6) << t.spec.name;
  }
  // Clipping: coef = max_norm / (norm + 1e-6).
  const double norm = GlobalGradNorm(ps);
  const double coef = ClipGradients(ps, norm, norm / 4);
  EXPECT_NEAR(coef, 0.25 * norm / (norm + 1e-6), 1e-6);  // f32, as PyTorch
  EXPECT_NEAR(GlobalGradNorm(ps), norm * coef, 1e-5 * norm);
  EXPECT_EQ(ClipGradients(ps, 0.5, 1.0), 1.0);
}

TEST(TrainInit, CoreNetStandardDeviations) {
  const ModelConfig c = LoadTrainConfig(Configs() + "tiny_shakespeare.yaml").model;
  ParamSet ps(c);
  InitParams(ps, 0);
  auto stddev = [&](const std::string& name) {
    const ParamTensor* t = ps.Find(name);
    double s = 0;
    for (size_t i = 0; i < t->numel; ++i)
      s += static_cast<double>(ps.params[t->offset + i]) * ps.params[t->offset + i];
    return std::sqrt(s / static_cast<double>(t->numel));
  };
  const double d = 1.0 / std::sqrt(128.0);
  EXPECT_NEAR(stddev("transformer.token_embeddings.weight"), d, 0.01 * d);
  EXPECT_NEAR(stddev("transformer.layers.3.attn.qkv_proj.weight"), d, 0.05 * d);
  EXPECT_NEAR(stddev("transformer.layers.3.ffn.proj_2.weight"), d / std::sqrt(8.0), 0.05 * d);
  EXPECT_EQ(ps.params[ps.Find("transformer.norm.weight")->offset], 1.0f);
  // Same seed, same weights; another seed, other weights.
  ParamSet again(c), other(c);
  InitParams(again, 0);
  InitParams(other, 1);
  EXPECT_EQ(ps.params, again.params);
  EXPECT_NE(ps.params, other.params);
}

}  // namespace train_config_test
}  // namespace elm
