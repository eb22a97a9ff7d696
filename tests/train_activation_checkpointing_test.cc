// Activation checkpointing (TrainModel::set_activation_checkpointing, docs/training.md
// "Activation checkpointing"): a few AdamW steps with and without it must give the same losses,
// gradients and weights bit for bit — on the tiny conformance shapes, the d_mid-like shape (layers
// of different widths), without GLU, in bf16 mixed precision, and for LoRA (with dropout) and DoRA
// — while holding fewer activation bytes. The config keys that switch it are tested here too.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.h"
#include "config/hf_config.h"
#include "test_util.h"
#include "train/init.h"
#include "train/optimizer.h"
#include "train/train_config.h"
#include "train/train_model.h"

namespace elm {
namespace train_activation_checkpointing_test {

struct Variant {
  bool bf16 = false;
  bool lora = false, dora = false;
  double lora_dropout = 0;
};

struct Trace {
  std::vector<double> losses;
  std::vector<std::vector<float>> grads;  // the trainable slab's gradients, per step
  std::vector<float> weights;             // the trainable slab after the steps
  int64_t activation_bytes = 0;
};

Trace Run(const ModelConfig& cfg, const Variant& v, bool ckpt, int steps = 3) {
  TrainModel m(cfg);
  InitParams(m.params(), 7);
  m.set_mixed_precision(v.bf16);
  m.set_activation_checkpointing(ckpt);
  EXPECT_EQ(m.activation_checkpointing(), ckpt);
  if (v.lora) {
    LoraSettings s;
    s.rank = 4;
    s.alpha = 8;
    s.dropout = v.lora_dropout;
    s.dora = v.dora;
    s.targets.fill(true);
    m.EnableLora(s);
    m.lora()->Init(3);
    if (v.dora) m.InitDoraMagnitudes();
  } else {
    m.params().AllocateTrainingState();
  }
  const int B = 2, T = 11, V = cfg.vocab_size;
  std::vector<int> in(B * T), tg(B * T);
  for (int i = 0; i < B * T; ++i) {
    in[i] = (i * 37 + 5) % V;
    tg[i] = i % 7 == 3 ? -100 : (i * 53 + 2) % V;
  }
  AdamWParams hp;
  hp.weight_decay = 0.1;
  Trace t;
  for (int k = 0; k < steps; ++k) {
    if (v.lora_dropout > 0) m.set_lora_dropout(true, 100 + static_cast<uint64_t>(k));
    m.ZeroGrad();
    LossOptions lo;
    lo.z_loss_coef = 1e-4f;
    t.losses.push_back(m.Forward(in.data(), tg.data(), B, T, lo).loss);
    t.activation_bytes = m.ActivationBytes();
    m.Backward();
    TrainSlab& s = m.trainable();
    t.grads.emplace_back(s.grads.begin(), s.grads.end());
    ClipGradients(s, GlobalGradNorm(s), 1.0);
    AdamWUpdate(s, hp, 1e-2, k + 1);
  }
  t.weights.assign(m.trainable().params.begin(), m.trainable().params.end());
  return t;
}

template <typename VecA, typename VecB>
bool SameBits(const VecA& a, const VecB& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void ExpectIdentical(const ModelConfig& cfg, const Variant& v, const std::string& label) {
  SCOPED_TRACE(label);
  const Trace plain = Run(cfg, v, false), ckpt = Run(cfg, v, true);
  ASSERT_EQ(plain.losses.size(), ckpt.losses.size());
  for (size_t k = 0; k < plain.losses.size(); ++k) {
    EXPECT_EQ(std::memcmp(&plain.losses[k], &ckpt.losses[k], sizeof(double)), 0)
        << "step " << k << " loss " << plain.losses[k] << " vs " << ckpt.losses[k];
    EXPECT_TRUE(SameBits(plain.grads[k], ckpt.grads[k])) << "gradients differ at step " << k;
  }
  EXPECT_TRUE(SameBits(plain.weights, ckpt.weights)) << "weights differ after the steps";
  if (cfg.n_layers > 1) {
    EXPECT_LT(ckpt.activation_bytes, plain.activation_bytes) << "checkpointing saved nothing";
  }
}

std::vector<std::pair<std::string, ModelConfig>> Shapes() {
  std::vector<std::pair<std::string, ModelConfig>> out;
  for (const char* name :
       {"a_tiny_qknorm_tied", "b_tiny_noqknorm_untied", "c_tiny_uniform_llamalike"})
    out.emplace_back(name, LoadHfConfig(test::DataDir() + "/conformance/" + name + "/config.json"));
  out.emplace_back("d_mid", LoadHfConfig(test::DataDir() + "/pytorch/d_mid_config.json"));
  return out;
}

TEST(ActivationCheckpointing, FullTrainingIsBitIdentical) {
  for (const auto& [name, cfg] : Shapes()) ExpectIdentical(cfg, {}, name + " f32");
}

TEST(ActivationCheckpointing, MixedPrecisionIsBitIdentical) {
  Variant v;
  v.bf16 = true;
  for (const auto& [name, cfg] : Shapes()) ExpectIdentical(cfg, v, name + " bf16");
}

TEST(ActivationCheckpointing, WithoutGluIsBitIdentical) {
  ModelConfig cfg = LoadHfConfig(test::DataDir() + "/pytorch/d_mid_config.json");
  cfg.ffn_with_glu = false;
  ExpectIdentical(cfg, {}, "d_mid without GLU");
}

TEST(ActivationCheckpointing, LoraAndDoraAreBitIdentical) {
  const ModelConfig cfg = LoadHfConfig(test::DataDir() + "/pytorch/d_mid_config.json");
  Variant lora;
  lora.lora = true;
  ExpectIdentical(cfg, lora, "d_mid LoRA");
  lora.lora_dropout = 0.1;
  ExpectIdentical(cfg, lora, "d_mid LoRA with dropout");
  Variant dora = lora;
  dora.dora = true;
  ExpectIdentical(cfg, dora, "d_mid DoRA with dropout");
}

// The preference losses' backward (BackwardRows) goes through the same recomputation.
TEST(ActivationCheckpointing, BackwardRowsIsBitIdentical) {
  const ModelConfig cfg = LoadHfConfig(test::DataDir() + "/pytorch/d_mid_config.json");
  std::vector<float> g[2];
  for (int ck = 0; ck < 2; ++ck) {
    TrainModel m(cfg);
    InitParams(m.params(), 9);
    m.params().AllocateTrainingState();
    m.set_activation_checkpointing(ck == 1);
    const int B = 2, T = 8;
    std::vector<int> in(B * T), tg(B * T);
    std::vector<float> scale(B * T);
    for (int i = 0; i < B * T; ++i) {
      in[i] = (i * 13 + 1) % cfg.vocab_size;
      tg[i] = (i * 29 + 4) % cfg.vocab_size;
      scale[i] = i % 3 == 0 ? 0.0f : 0.25f * static_cast<float>(i % 5);
    }
    m.ZeroGrad();
    m.Forward(in.data(), tg.data(), B, T, {});
    m.BackwardRows(scale.data());
    g[ck].assign(m.params().grads.begin(), m.params().grads.end());
  }
  EXPECT_TRUE(SameBits(g[0], g[1]));
}

// Switching between batches of different shapes and toggling the mode keeps the results exact.
TEST(ActivationCheckpointing, TogglingBetweenStepsIsExact) {
  const ModelConfig cfg = LoadHfConfig(test::DataDir() + "/pytorch/d_mid_config.json");
  TrainModel a(cfg), b(cfg);
  InitParams(a.params(), 1);
  InitParams(b.params(), 1);
  a.params().AllocateTrainingState();
  b.params().AllocateTrainingState();
  for (int round = 0; round < 4; ++round) {
    const int B = 1 + round % 2, T = 5 + round;
    std::vector<int> in(B * T), tg(B * T);
    for (int i = 0; i < B * T; ++i) in[i] = tg[(i + 1) % (B * T)] = (i * 7 + round) % 256;
    b.set_activation_checkpointing(round % 2 == 0);
    a.ZeroGrad();
    b.ZeroGrad();
    const double la = a.Forward(in.data(), tg.data(), B, T, {}).loss;
    const double lb = b.Forward(in.data(), tg.data(), B, T, {}).loss;
    EXPECT_EQ(la, lb);
    a.Backward();
    b.Backward();
    EXPECT_TRUE(SameBits(a.params().grads, b.params().grads)) << "round " << round;
  }
}

TEST(ActivationCheckpointing, CoreNetKeysSwitchIt) {
  const std::string base =
      "dataset:\n  language_modeling:\n    general_lm:\n      train_data_info:\n"
      "        - file_name: corpus.txt\n"
      "model:\n  language_modeling:\n    name: general_gpt\n    general_gpt:\n"
      "      model_name: OpenELM-270M\n";
  EXPECT_FALSE(ParseTrainConfig(base, "t.yaml").activation_checkpointing);
  const TrainConfig top = ParseTrainConfig(base, "t.yaml", {"model.activation_checkpointing=true"});
  EXPECT_TRUE(top.activation_checkpointing);
  for (const std::string& k : top.ignored_keys)
    EXPECT_EQ(k.find("activation_checkpointing"), std::string::npos) << k << " is read now";
  EXPECT_TRUE(
      ParseTrainConfig(base, "t.yaml",
                       {"model.language_modeling.general_gpt.activation_checkpointing=true"})
          .activation_checkpointing);
  EXPECT_THROW(ParseTrainConfig(base, "t.yaml", {"model.activation_checkpointing=maybe"}), Error);
}

// elm sft and elm dpo (LoRA, with its frozen-base reference pass) with TRL's
// gradient_checkpointing: the same logged losses, bit for bit.
TEST(ActivationCheckpointing, SftAndDpoLogTheSameLosses) {
  const std::string dir = test::TempDir("ckpt_posttrain");
  std::ofstream(dir + "/chats.jsonl")
      << R"({"messages":[{"role":"user","content":"Say hi"},{"role":"assistant","content":"Hi there!"}]})"
      << "\n"
      << R"({"messages":[{"role":"user","content":"Count"},{"role":"assistant","content":"One, two."}]})"
      << "\n";
  std::ofstream(dir + "/prefs.jsonl")
      << R"({"prompt":"Name a color","chosen":"Blue.","rejected":"Seven."})"
      << "\n"
      << R"({"prompt":"Say hi","chosen":"Hello!","rejected":"No."})"
      << "\n";
  const std::string cfg = dir + "/recipe.yaml";
  std::ofstream(cfg) << "model_name_or_path: " ELM_SOURCE_DIR "/models/tiny-random-32k\n"
                     << "learning_rate: 1.0e-3\nper_device_train_batch_size: 2\nmax_steps: 2\n"
                     << "max_length: 64\nmax_prompt_length: 32\nlogging_steps: 1\n"
                     << "use_peft: true\nlora_r: 4\nlora_dropout: 0.1\n"
                     << "elm:\n  train_file: " << dir << "/chats.jsonl\n";
  for (const char* cmd : {"sft", "dpo"}) {
    std::vector<double> losses[2];
    for (int ck = 0; ck < 2; ++ck) {
      const std::string run = dir + "/" + cmd + std::to_string(ck);
      std::string args = std::string(cmd) + " --config " + cfg + " --set output_dir=" + run +
                         " --set gradient_checkpointing=" + (ck ? "true" : "false");
      if (std::string(cmd) == "dpo") args += " --set elm.train_file=" + dir + "/prefs.jsonl";
      std::string out, err;
      ASSERT_EQ(test::RunElm(args, &out, &err), 0) << cmd << " " << err;
      std::ifstream in(run + "/train_log.jsonl");
      for (std::string line; std::getline(in, line);) {
        const auto j = nlohmann::json::parse(line);
        if (j.contains("loss")) losses[ck].push_back(j["loss"].get<double>());
      }
    }
    ASSERT_EQ(losses[0].size(), 2u) << cmd;
    EXPECT_EQ(losses[0], losses[1]) << cmd;
  }
  std::filesystem::remove_all(dir);
}

}  // namespace train_activation_checkpointing_test
}  // namespace elm
