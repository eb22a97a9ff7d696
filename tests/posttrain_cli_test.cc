// Instruct tuning end to end (`elm sft`, `elm dpo`; docs/training.md, "Instruct tuning") on
// models/tiny-random-32k: recipes with alignment-handbook keys, the log of TRL's metrics and
// `elm plot --metric`, LoRA adapters and full checkpoints, the recipe's errors, and
// transformers' learning-rate schedules.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/mmap_file.h"
#include "test_util.h"
#include "train/distributed.h"
#include "train/posttrain_config.h"
#include "train/train_config.h"

namespace elm {
namespace posttrain_cli_test {
namespace fs = std::filesystem;

const char kPrefs[] =
    R"({"prompt":"Say hi","chosen":[{"role":"user","content":"Say hi"},{"role":"assistant","content":"Hi there!"}],"rejected":[{"role":"user","content":"Say hi"},{"role":"assistant","content":"No."}]}
{"prompt":"Count to three","chosen":"One, two, three.","rejected":"Five."}
{"prompt":"Name a color","chosen":"Blue.","rejected":"Seven."}
)";
const char kChats[] =
    R"({"messages":[{"role":"user","content":"Say hi"},{"role":"assistant","content":"Hi there!"}]}
{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Count"},{"role":"assistant","content":"One, two."}]}
)";

std::string Recipe(const std::string& dir, const std::string& extra) {
  std::ofstream(dir + "/prefs.jsonl") << kPrefs;
  std::ofstream(dir + "/chats.jsonl") << kChats;
  const std::string path = dir + "/recipe.yaml";
  std::ofstream(path) << "model_name_or_path: " ELM_SOURCE_DIR "/models/tiny-random-32k\n"
                      << "learning_rate: 1.0e-3\nper_device_train_batch_size: 2\n"
                      << "max_length: 64\nmax_prompt_length: 32\nlogging_steps: 1\n"
                      << "output_dir: " << dir << "/run\n"
                      << "dataset_mixer: {x: 1.0}\n"
                      << extra;
  return path;
}

std::vector<nlohmann::json> LogLines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(PosttrainCli, DpoWithLoraLogsTrlMetricsAndPlotsThem) {
  const std::string dir = test::TempDir("posttrain_dpo");
  const std::string cfg =
      Recipe(dir,
             "beta: 0.1\nloss_type: sigmoid\nmax_steps: 6\nlr_scheduler_type: cosine\n"
             "warmup_ratio: 0.1\nprecompute_ref_log_probs: true\nuse_peft: true\nlora_r: 4\n"
             "lora_alpha: 8\nlora_dropout: 0.0\nelm:\n  train_file: prefs.jsonl\n"
             "  eval_file: prefs.jsonl\n");
  std::string out, err;
  ASSERT_EQ(test::RunElm("dpo --config " + cfg, &out, &err), 0) << out << err;
  EXPECT_NE(err.find("no effect in elm: dataset_mixer"), std::string::npos) << err;
  const auto lines = LogLines(dir + "/run/train_log.jsonl");
  ASSERT_EQ(lines.size(), 7u);  // 6 steps and the evaluation
  for (const char* k :
       {"loss", "lr", "grad_norm", "rewards/chosen", "rewards/rejected", "rewards/accuracies",
        "rewards/margins", "logps/chosen", "logps/rejected", "logits/chosen", "logits/rejected"})
    EXPECT_TRUE(lines[0].contains(k)) << k;
  // Step 1: the policy is the reference (adapter B = 0): every reward is 0, the loss log 2.
  EXPECT_NEAR(lines[0]["loss"].get<double>(), std::log(2.0), 1e-6);
  EXPECT_NEAR(lines[0]["rewards/margins"].get<double>(), 0.0, 1e-5);  // up to batch padding
  EXPECT_GT(lines[5]["rewards/margins"].get<double>(), 0.0);          // it learns to prefer chosen
  EXPECT_TRUE(lines[6].contains("val_rewards/accuracies"));
  const std::string ckpt = dir + "/run/checkpoints/step_00000006";
  EXPECT_TRUE(fs::exists(ckpt + "/adapter_model.safetensors"));
  ASSERT_EQ(test::RunElm("plot --log " + dir + "/run/train_log.jsonl --metric rewards/accuracies " +
                             "--output " + dir + "/acc.svg",
                         &out, &err),
            0)
      << err;
  EXPECT_NE(ReadTextFile(dir + "/acc.svg").find("validation rewards/accuracies"),
            std::string::npos);
  // The adapter applies at inference.
  ASSERT_EQ(test::RunElm("generate --model " ELM_SOURCE_DIR "/models/tiny-random-32k --lora " +
                             ckpt + " --prompt hi -n 3",
                         &out, &err),
            0)
      << err;
  // A run folder holding a run is not written over without --overwrite.
  EXPECT_NE(test::RunElm("dpo --config " + cfg, &out, &err), 0);
  EXPECT_NE(err.find("already holds a run"), std::string::npos) << err;
}

TEST(PosttrainCli, SftFullAndDpoHingeWithAFrozenCopy) {
  const std::string dir = test::TempDir("posttrain_sft");
  const std::string cfg = Recipe(dir,
                                 "max_steps: 4\nbeta: 0.5\nloss_type: hinge\nelm:\n"
                                 "  train_file: chats.jsonl\n  eval_file: chats.jsonl\n");
  std::string out, err;
  ASSERT_EQ(test::RunElm("sft --config " + cfg, &out, &err), 0) << out << err;
  auto lines = LogLines(dir + "/run/train_log.jsonl");
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_LT(lines[3]["loss"].get<double>(), lines[0]["loss"].get<double>());
  EXPECT_TRUE(lines[4].contains("val_loss"));
  EXPECT_TRUE(fs::exists(dir + "/run/checkpoints/step_00000004/model.safetensors"));
  ASSERT_EQ(test::RunElm("dpo --config " + cfg + " --overwrite --set elm.train_file=" + dir +
                             "/prefs.jsonl --set elm.eval_file=" + dir + "/prefs.jsonl",
                         &out, &err),
            0)
      << out << err;
  lines = LogLines(dir + "/run/train_log.jsonl");
  EXPECT_NEAR(lines[0]["loss"].get<double>(), 1.0, 1e-6);  // hinge at h = 0
  EXPECT_NE(out.find("rewards/accuracies"), std::string::npos);
}

// DoRA through `elm dpo` (use_dora): the magnitudes start at ‖W‖, so step 1 is the base model
// (loss log 2); the checkpoint is a PEFT DoRA adapter that --lora and merge-lora apply alike.
// `extra` adds recipe keys (QDoRA's quantized base).
void ExpectDoraTrainsAppliesAndMerges(const std::string& name, const std::string& extra) {
  const std::string dir = test::TempDir(name);
  const std::string cfg = Recipe(dir,
                                 "beta: 0.1\nmax_steps: 3\nuse_peft: true\nuse_dora: true\n"
                                 "lora_r: 4\nlora_alpha: 8\nlora_dropout: 0.0\n" +
                                     extra + "elm:\n  train_file: prefs.jsonl\n");
  std::string out, err;
  ASSERT_EQ(test::RunElm("dpo --config " + cfg, &out, &err), 0) << out << err;
  const auto lines = LogLines(dir + "/run/train_log.jsonl");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_NEAR(lines[0]["loss"].get<double>(), std::log(2.0), 1e-5);
  const std::string ckpt = dir + "/run/checkpoints/step_00000003";
  const auto ac = nlohmann::json::parse(ReadTextFile(ckpt + "/adapter_config.json"));
  EXPECT_TRUE(ac["use_dora"].get<bool>());
  EXPECT_NE(ReadTextFile(ckpt + "/adapter_model.safetensors").find("lora_magnitude_vector"),
            std::string::npos);
  const std::string model = ELM_SOURCE_DIR "/models/tiny-random-32k";
  const std::string gen = " --prompt hi -n 6 --temp 0";
  std::string with_lora, merged;
  ASSERT_EQ(test::RunElm("generate --model " + model + " --lora " + ckpt + gen, &with_lora, &err),
            0)
      << err;
  ASSERT_EQ(test::RunElm(
                "merge-lora --model " + model + " --lora " + ckpt + " --output " + dir + "/merged",
                &out, &err),
            0)
      << err;
  ASSERT_EQ(test::RunElm("generate --model " + dir + "/merged" + gen, &merged, &err), 0) << err;
  EXPECT_EQ(with_lora, merged);
}

TEST(PosttrainCli, DoraAdapterTrainsAppliesAndMerges) {
  ExpectDoraTrainsAppliesAndMerges("posttrain_dora", "");
}

// QDoRA: the same with the base in NF4 (double quantization) and in Q8_0. The magnitudes start at
// the dequantized base's norms, so step 1 is the quantized base against itself: log 2 exactly as
// with DoRA. The adapter applies to (and merges into) the unquantized base, as PEFT's does.
TEST(PosttrainCli, QdoraAdapterTrainsAppliesAndMerges) {
  ExpectDoraTrainsAppliesAndMerges("posttrain_qdora_nf4",
                                   "load_in_4bit: true\nuse_bnb_nested_quant: true\n");
  ExpectDoraTrainsAppliesAndMerges("posttrain_qdora_q8", "load_in_8bit: true\n");
}

std::string ConfigError(const std::string& yaml, PosttrainTask task = PosttrainTask::kDpo) {
  try {
    ParsePosttrainConfig(yaml, "r.yaml", task);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(PosttrainConfig, KeysAndErrors) {
  const std::string base = "model_name_or_path: m\nelm:\n  train_file: t.jsonl\n";
  const PosttrainConfig c = ParsePosttrainConfig(
      base +
          "beta: 0.01\nloss_type: hinge\nnum_train_epochs: 5\nlearning_rate: 2.0e-5\n"
          "gradient_accumulation_steps: 2\nbf16: true\ngradient_checkpointing: true\n"
          "hub_model_id: x\nbetta: 1\n",
      "r.yaml", PosttrainTask::kDpo);
  EXPECT_EQ(c.loss.type, PreferenceLossType::kHinge);
  EXPECT_DOUBLE_EQ(c.loss.beta, 0.01);
  EXPECT_EQ(c.accum, 2);
  EXPECT_TRUE(c.bf16);
  EXPECT_EQ(c.ignored_keys, std::vector<std::string>{"hub_model_id"});
  ASSERT_EQ(c.unknown_keys.size(), 1u);
  EXPECT_NE(c.unknown_keys[0].find("did you mean beta"), std::string::npos);
  EXPECT_NE(ConfigError(base + "loss_type: kto\n").find("elm has sigmoid, hinge, ipo"),
            std::string::npos);
  EXPECT_NE(ConfigError(base + "beta: abc\n").find("key 'beta' must be a number, got 'abc'"),
            std::string::npos);
  EXPECT_NE(ConfigError("model_name_or_path: m\nelm:\n  train_fil: x\n")
                .find("unknown key 'elm.train_fil' in elm's own block; did you mean "
                      "'elm.train_file'?"),
            std::string::npos);
  EXPECT_NE(ConfigError("model_name_or_path: m\n").find("elm.train_file"), std::string::npos);
  EXPECT_NE(ConfigError(base + "max_length: 512\nmax_prompt_length: 512\n").find("leaves no room"),
            std::string::npos);
  EXPECT_NE(ConfigError(base + "lr_scheduler_type: polynomial\n").find("elm has linear, cosine"),
            std::string::npos);
  EXPECT_NE(ConfigError(base + "use_peft: true\nlora_target_modules: [lm_head]\n")
                .find("'lm_head' is not an OpenELM module"),
            std::string::npos);
}

// transformers' get_scheduler: linear warm-up from 0, then linear / cosine decay to 0.
TEST(PosttrainConfig, HfSchedules) {
  EXPECT_DOUBLE_EQ(HfLearningRate("cosine", 1.0, 0, 10, 2), 0.0);
  EXPECT_DOUBLE_EQ(HfLearningRate("cosine", 1.0, 1, 10, 2), 0.5);
  EXPECT_DOUBLE_EQ(HfLearningRate("cosine", 1.0, 2, 10, 2), 1.0);
  EXPECT_NEAR(HfLearningRate("cosine", 1.0, 6, 10, 2), 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(HfLearningRate("linear", 1.0, 6, 10, 2), 0.5);
  EXPECT_DOUBLE_EQ(HfLearningRate("constant_with_warmup", 1.0, 1, 10, 2), 0.5);
  EXPECT_DOUBLE_EQ(HfLearningRate("constant", 1.0, 0, 10, 2), 1.0);
}

}  // namespace posttrain_cli_test
}  // namespace elm

namespace elm {
namespace posttrain_cli_test {
// configs/openelm_instruct_*.yaml transcribe apple/corenet's recipe and README-instruct.md.
TEST(PosttrainConfig, ShippedInstructRecipes) {
  struct Size {
    const char* name;
    double epochs, lr;
    PreferenceLossType loss;
  };
  for (const Size& s : {Size{"270M", 5, 2e-5, PreferenceLossType::kHinge},
                        Size{"450M", 8, 3e-5, PreferenceLossType::kHinge},
                        Size{"1_1B", 5, 5e-5, PreferenceLossType::kSigmoid},
                        Size{"3B", 10, 1e-4, PreferenceLossType::kHinge}}) {
    SCOPED_TRACE(s.name);
    const PosttrainConfig c = LoadPosttrainConfig(
        std::string(ELM_SOURCE_DIR "/configs/openelm_instruct_") + s.name + ".yaml",
        PosttrainTask::kDpo, {"elm.train_file=t.jsonl", "elm.eval_file=e.jsonl"});
    EXPECT_EQ(c.model_name_or_path, std::string("apple/OpenELM-") + s.name);
    EXPECT_DOUBLE_EQ(c.num_train_epochs, s.epochs);
    EXPECT_DOUBLE_EQ(c.learning_rate, s.lr);
    EXPECT_EQ(c.loss.type, s.loss);
    EXPECT_DOUBLE_EQ(c.loss.beta, 0.01);
    EXPECT_EQ(c.max_length, 1024);
    EXPECT_EQ(c.max_prompt_length, 512);
    EXPECT_EQ(c.batch_size, 8);
    EXPECT_EQ(c.accum, 2);
    EXPECT_DOUBLE_EQ(c.warmup_ratio, 0.1);
    EXPECT_EQ(c.lr_scheduler_type, "cosine");
    EXPECT_TRUE(c.bf16);
    EXPECT_TRUE(c.gradient_checkpointing);
    EXPECT_TRUE(c.unknown_keys.empty());
  }
  // The worked example's recipe (docs/training.md) parses with no unknown key.
  const PosttrainConfig ex = LoadPosttrainConfig(
      ELM_SOURCE_DIR "/configs/openelm_shakespeare_dpo.yaml", PosttrainTask::kDpo);
  EXPECT_TRUE(ex.unknown_keys.empty());
  EXPECT_EQ(ex.loss.type, PreferenceLossType::kHinge);
}
}  // namespace posttrain_cli_test
}  // namespace elm

namespace elm {
namespace posttrain_cli_test {
// CoreNet's PEFT keys with use_dora (README-peft.md: "set use_dora to True"): DoRA on the linear
// entries; an embedding entry with use_dora is refused as CoreNet's lora.Embedding refuses it.
TEST(PosttrainConfig, CoreNetUseDora) {
  const std::string dir = test::TempDir("dora_cfg");
  const std::string yaml = test::TinyTrainYaml(dir, 2, 2, 2);
  const std::string from = "elm.init_from=" + dir + "/base";
  auto lora = [](const char* emb_dora, const char* lin_dora) {
    return std::string("model.lora={use_lora: true, config: [") +
           "{regex: '.*token_embedding.*', module_type: embedding, params: {r: 4, use_dora: " +
           emb_dora +
           "}}, {regex: '.*proj.*', module_type: linear, params: {r: 4, use_dora: " + lin_dora +
           "}}]}";
  };
  const TrainConfig c = ParseTrainConfig(yaml, "t.yaml", {lora("false", "true"), from});
  EXPECT_TRUE(c.lora.dora);
  EXPECT_TRUE(c.lora.has(LoraTarget::kEmbeddings));
  const LoraLayout layout(c.model, c.lora);
  EXPECT_EQ(layout.Magnitude(-1, LoraTarget::kEmbeddings), nullptr);  // plain LoRA
  ASSERT_NE(layout.Magnitude(0, LoraTarget::kQkv), nullptr);
  EXPECT_EQ(layout.Magnitude(0, LoraTarget::kQkv)->shape, std::vector<int64_t>{c.model.qkv_out(0)});
  try {
    ParseTrainConfig(yaml, "t.yaml", {lora("true", "true"), from});
    ADD_FAILURE() << "use_dora on the embedding entry was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("DoRA is not supported for Embedding layers"),
              std::string::npos)
        << e.what();
  }
}
}  // namespace posttrain_cli_test
}  // namespace elm

namespace elm {
namespace posttrain_cli_test {

// The values of a log line that a bit-identical continuation reproduces (not the timings).
std::string StepValues(const nlohmann::json& j) {
  nlohmann::json v;
  for (const auto& [k, x] : j.items())
    if (k.find("_per_s") == std::string::npos && k != "elapsed_s") v[k] = x;
  return v.dump();
}

// Runs `cmd` for 6 steps with a checkpoint every 3, then resumes from step 3 into the same run
// folder: the rewound run drops step 6's checkpoint and log lines, and continues to a step-6
// checkpoint and log lines equal, bit for bit, to the uninterrupted run's.
void ExpectBitIdenticalResume(const std::string& dir, const std::string& cmd,
                              const std::vector<std::string>& files) {
  std::string out, err;
  ASSERT_EQ(test::RunElm(cmd, &out, &err), 0) << out << err;
  const std::string run = dir + "/run", step6 = run + "/checkpoints/step_00000006";
  const auto full = LogLines(run + "/train_log.jsonl");
  std::vector<std::string> full_files;
  for (const auto& f : files) full_files.push_back(ReadTextFile(step6 + "/" + f));
  // A run folder holding a run is refused without --resume or --overwrite, and the two together.
  EXPECT_NE(test::RunElm(cmd, &out, &err), 0);
  EXPECT_NE(err.find("already holds a run"), std::string::npos) << err;
  EXPECT_NE(err.find("--resume"), std::string::npos) << err;
  EXPECT_NE(test::RunElm(cmd + " --resume " + run + " --overwrite", &out, &err), 0);
  EXPECT_NE(err.find("contradict"), std::string::npos) << err;

  // Verbose, to see that it continued (a fresh start would end at the same values too).
  std::string verbose = cmd;
  verbose.erase(verbose.find(" --quiet"), 8);
  ASSERT_EQ(test::RunElm(verbose + " --resume " + run + "/checkpoints/step_00000003", &out, &err),
            0)
      << out << err;
  EXPECT_NE(err.find("at step 3"), std::string::npos) << err;
  EXPECT_NE(err.find("removed"), std::string::npos) << err;  // step 6, which it replaces
  EXPECT_EQ(err.find("step 1/6"), std::string::npos) << err;
  const auto resumed = LogLines(run + "/train_log.jsonl");
  ASSERT_EQ(resumed.size(), full.size());
  for (size_t i = 0; i < full.size(); ++i)
    EXPECT_EQ(StepValues(resumed[i]), StepValues(full[i])) << "log line " << i;
  for (size_t i = 0; i < files.size(); ++i)
    EXPECT_TRUE(ReadTextFile(step6 + "/" + files[i]) == full_files[i]) << files[i];
  // --resume of the run folder picks its newest checkpoint: step 6 of 6 leaves nothing to do.
  EXPECT_NE(test::RunElm(cmd + " --resume " + run, &out, &err), 0);
  EXPECT_NE(err.find("nothing is left to train"), std::string::npos) << err;
}

TEST(PosttrainCli, DpoQloraResumeIsBitIdentical) {
  const std::string dir = test::TempDir("posttrain_resume_dpo");
  // LoRA dropout on (the masks are drawn per step), the base in NF4 with double quantization, and
  // 3 pairs in batches of 2 (steps cross epochs, so the shuffled order's position is restored).
  const std::string cfg = Recipe(dir,
                                 "beta: 0.1\nmax_steps: 6\nsave_steps: 3\nuse_peft: true\n"
                                 "lora_r: 4\nlora_alpha: 8\nlora_dropout: 0.1\nload_in_4bit: true\n"
                                 "use_bnb_nested_quant: true\nelm:\n  train_file: prefs.jsonl\n"
                                 "  eval_file: prefs.jsonl\n");
  ExpectBitIdenticalResume(dir, "dpo --quiet --config " + cfg,
                           {"adapter_model.safetensors", "optimizer.safetensors"});
  const auto lines = LogLines(dir + "/run/train_log.jsonl");
  EXPECT_NEAR(lines[0]["loss"].get<double>(), std::log(2.0), 1e-6);  // the quantized base both
  EXPECT_TRUE(lines[0].contains("logits/chosen"));
}

TEST(PosttrainCli, SftFullResumeIsBitIdentical) {
  const std::string dir = test::TempDir("posttrain_resume_sft");
  const std::string cfg =
      Recipe(dir,
             "max_steps: 6\nsave_steps: 3\ngradient_accumulation_steps: 2\n"
             "per_device_train_batch_size: 1\nelm:\n  train_file: chats.jsonl\n");
  ExpectBitIdenticalResume(dir, "sft --quiet --config " + cfg,
                           {"model.safetensors", "optimizer.safetensors"});
}

// A checkpoint written with other settings is refused, naming both.
TEST(PosttrainCli, ResumeWithAnotherRecipeIsRefused) {
  const std::string dir = test::TempDir("posttrain_resume_bad");
  const std::string cfg = Recipe(dir,
                                 "max_steps: 2\nsave_steps: 1\nuse_peft: true\nlora_r: 4\n"
                                 "elm:\n  train_file: chats.jsonl\n");
  std::string out, err;
  ASSERT_EQ(test::RunElm("sft --quiet --config " + cfg, &out, &err), 0) << out << err;
  const std::string ck = dir + "/run/checkpoints/step_00000001";
  EXPECT_NE(test::RunElm("sft --quiet --config " + cfg +
                             " --set per_device_train_batch_size=1 --resume " + ck,
                         &out, &err),
            0);
  EXPECT_NE(err.find("other settings"), std::string::npos) << err;
  EXPECT_NE(test::RunElm("sft --quiet --config " + cfg + " --resume " + dir, &out, &err), 0);
  EXPECT_NE(err.find("no complete checkpoint"), std::string::npos) << err;
}

}  // namespace posttrain_cli_test
}  // namespace elm

namespace elm {
namespace posttrain_cli_test {

// `mpirun -np 2 elm dpo` (batch 1, accumulation 1) against one process with accumulation 2: the
// same global batches, dropout masks and steps, so the same log up to the order of the gradient
// sums; only rank 0 writes.
TEST(PosttrainCli, DpoTwoRanksMatchOneProcessWithAccumulation) {
  if (!Distributed::compiled_with_mpi()) GTEST_SKIP() << "elm was built without MPI";
  std::string out, err;
  if (test::RunShell("command -v mpirun", &out, &err) != 0) GTEST_SKIP() << "mpirun not found";
  const std::string dir = test::TempDir("posttrain_mpi");
  const std::string cfg = Recipe(dir,
                                 "beta: 0.1\nmax_steps: 3\nper_device_train_batch_size: 1\n"
                                 "use_peft: true\nlora_r: 4\nlora_alpha: 8\nlora_dropout: 0.1\n"
                                 "elm:\n  train_file: prefs.jsonl\n");
  const std::string env = "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 ";
  const std::string elm = std::string(ELM_BINARY) + " dpo --quiet --config " + cfg;
  ASSERT_EQ(test::RunShell(
                env + elm + " --set gradient_accumulation_steps=2 --set output_dir=" + dir + "/one",
                &out, &err),
            0)
      << out << err;
  ASSERT_EQ(
      test::RunShell(test::MpirunCommand("mpirun", 2) + elm + " --set output_dir=" + dir + "/two",
                     &out, &err),
      0)
      << out << err;
  // Rank 0's report only.
  EXPECT_EQ(out.find("trained 3 steps"), out.rfind("trained 3 steps")) << out;
  EXPECT_NE(out.find("trained 3 steps"), std::string::npos) << out;
  const auto one = LogLines(dir + "/one/train_log.jsonl"),
             two = LogLines(dir + "/two/train_log.jsonl");
  ASSERT_EQ(one.size(), two.size());
  for (size_t i = 0; i < one.size(); ++i)
    for (const char* k : {"loss", "grad_norm", "rewards/margins", "logits/chosen"}) {
      const double a = one[i][k].get<double>(), b = two[i][k].get<double>();
      EXPECT_NEAR(a, b, 1e-5 * std::max(1.0, std::fabs(a))) << "line " << i << " " << k;
    }
  EXPECT_TRUE(fs::exists(dir + "/two/checkpoints/step_00000003/DONE"));
}

}  // namespace posttrain_cli_test
}  // namespace elm
