// Sharded data parallelism (docs/training.md, "Sharded data parallelism"): under mpirun -np 2 and
// 4 (oversubscribed), ZeRO-1, shard_grad_op (ZeRO-2) and full_shard (ZeRO-3, with and without
// activation checkpointing) give the same losses, gradient norms and final weights as no_shard,
// bit for bit, with and without overlapped reduction; sharded checkpoints (one moments file per
// rank and a manifest) resume on 2 ranks and in one process from 4 ranks (full_shard: 4 → 2 → 1);
// full_shard with bf16 parameter_datatype and under LoRA equals no_shard;
// a rank killed while writing its shard leaves the previous checkpoint usable.
// The mpirun tests skip themselves when elm was built without MPI or no mpirun is installed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/mmap_file.h"
#include "config/hf_config.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "train/distributed.h"
#include "train/params.h"
#include "train/sharding.h"
#include "train/train_model.h"

#ifndef ELM_MPIEXEC
#define ELM_MPIEXEC ""
#endif

namespace elm {
namespace train_sharding_test {
namespace fs = std::filesystem;

// Rank ranges cover the slab, in order, and cut only at tensor boundaries.
TEST(TrainSharding, LayoutCutsAtTensorBoundaries) {
  ModelConfig c = LoadHfConfig(test::DataDir() + "/pytorch/d_mid_config.json");
  const ParamSet ps(c);
  for (int world : {1, 2, 3, 4, 7}) {
    const ShardLayout l = ShardLayout::Make(ps, world);
    ASSERT_EQ(l.world(), world);
    EXPECT_EQ(l.begin(0), 0u);
    EXPECT_EQ(l.end(world - 1), ps.size());
    for (int r = 0; r < world; ++r) {
      EXPECT_LE(l.begin(r), l.end(r));
      bool at_boundary = l.begin(r) == ps.size();
      for (const SlabTensor& t : ps.tensors()) at_boundary |= t.offset == l.begin(r);
      EXPECT_TRUE(at_boundary) << world << " " << r;
    }
  }
  // Two ranks split the d_mid shape's 4 layers near the middle.
  const ShardLayout two = ShardLayout::Make(ps, 2);
  EXPECT_GT(two.end(0), ps.size() / 4);
  EXPECT_LT(two.end(0), 3 * ps.size() / 4);
}

std::string FindMpirun() {
  if (const std::string configured = ELM_MPIEXEC;
      !configured.empty() && ::access(configured.c_str(), X_OK) == 0)
    return configured;
  std::string out, err;
  if (test::RunShell("command -v mpirun", &out, &err) != 0) return "";
  out.erase(out.find_last_not_of(" \n") + 1);
  return out;
}

std::vector<nlohmann::json> Steps(const std::string& log_path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(log_path);
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (!j.contains("val_loss")) out.push_back(j);
  }
  return out;
}

class TrainShardingRun : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!Distributed::compiled_with_mpi())
      GTEST_SKIP() << "elm was built without MPI (ELM_MPI=OFF or no MPI found by CMake)";
    mpirun_ = FindMpirun();
    if (mpirun_.empty()) GTEST_SKIP() << "mpirun not found (Debian: apt install openmpi-bin)";
    dir_ = test::TempDir("train_sharding");
    yaml_ = dir_ + "/tiny.yaml";
    // The tiny setup (2 layers, dim 32), 6 steps, a checkpoint every 3.
    std::ofstream(yaml_) << test::TinyTrainYaml(dir_, /*save_every=*/3, /*val_batches=*/2,
                                                /*keep_last_checkpoints=*/0);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
#if defined(__SANITIZE_ADDRESS__)
  static constexpr const char* kEnv =
      "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=0 ";
#else
  static constexpr const char* kEnv = "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 ";
#endif
  std::string Args(const std::string& label, const std::string& extra) const {
    return std::string(ELM_BINARY) + " train --quiet --config " + yaml_ +
           " --set common.run_label=" + label + " " + extra;
  }
  // `np` ranks (0: one process without mpirun); `env` is exported to every rank.
  int Run(int np, const std::string& label, const std::string& extra, std::string* err,
          const std::string& env = "") const {
    std::string out;
    if (np == 0) return test::RunShell(kEnv + env + " " + Args(label, extra), &out, err);
    const std::string cmd = env + " " +
                            test::MpirunCommand(mpirun_, np, "--oversubscribe --bind-to none",
                                                {"ELM_TEST_KILL_RANK_IN_CHECKPOINT"});
    return test::RunShell(cmd + Args(label, extra), &out, err);
  }
  std::string Run0(int np, const std::string& label, const std::string& extra) const {
    std::string err;
    const int rc = Run(np, label, extra, &err);
    EXPECT_EQ(rc, 0) << label << ": " << err;
    return err;
  }
  std::string Ckpt(const std::string& label, int step) const {
    return dir_ + "/results/" + label + "/checkpoints/" + CheckpointName(step);
  }
  std::string Log(const std::string& label) const {
    return dir_ + "/results/" + label + "/train_log.jsonl";
  }
  std::vector<float> Weights(const std::string& ckpt) const {
    TrainModel tm(LoadHfConfig(ckpt + "/config.json"));
    LoadCheckpoint(ckpt, tm.params());
    const SlabFloats& w = tm.params().params;
    return {w.begin(), w.end()};
  }
  // Losses and gradient norms of every step, and the final weights, bit for bit.
  void ExpectSameRun(const std::string& a, const std::string& b) const {
    const auto sa = Steps(Log(a)), sb = Steps(Log(b));
    ASSERT_EQ(sa.size(), 6u) << a;
    ASSERT_EQ(sb.size(), 6u) << b;
    for (size_t i = 0; i < 6; ++i) {
      EXPECT_EQ(sa[i]["loss"].get<double>(), sb[i]["loss"].get<double>()) << a << " " << b << i;
      EXPECT_EQ(sa[i]["grad_norm"].get<double>(), sb[i]["grad_norm"].get<double>()) << i;
    }
    EXPECT_TRUE(ReadTextFile(Ckpt(a, 6) + "/model.safetensors") ==
                ReadTextFile(Ckpt(b, 6) + "/model.safetensors"))
        << a << " vs " << b;
  }
  std::string mpirun_, dir_, yaml_;
};

// d_mid's layer shapes (4 layers, layer-wise scaled heads and FFN widths) with the tiny setup's
// vocabulary.
constexpr const char* kMidShape =
    "--set 'model.language_modeling.general_gpt={num_transformer_layers: 4, model_dim: 64, "
    "head_dim: 16, num_gqa_groups: 2, qkv_multipliers: [0.25, 1.0], ffn_multipliers: [0.5, 2.0], "
    "ffn_dim_divisor: 16, max_context_length: 32}' ";

TEST_F(TrainShardingRun, EveryModeEqualsNoShardBitForBit) {
  for (const int np : {2, 4}) {
    // 4 ranks run the d_mid-like shape only (the suite runs on a shared 2-core machine).
    for (const std::string& shape : {std::string(), std::string(kMidShape)}) {
      if (np == 4 && shape.empty()) continue;
      const std::string tag = std::to_string(np) + (shape.empty() ? "tiny" : "mid");
      SCOPED_TRACE(tag);
      // Accumulation 1 on 4 ranks keeps the global batch of 2 ranks × accum_freq 2.
      const std::string base = shape + (np == 4 ? "--set common.accum_freq=1 " : "");
      Run0(np, "ddp" + tag, base + "--set elm.zero_stage=0");
      Run0(np, "blocking" + tag, base + "--set elm.zero_stage=0 --set elm.overlap_reduction=false");
      Run0(np, "zero1" + tag, base + "--set elm.zero_stage=1");
      const std::string err =
          Run0(np, "zero2" + tag, base + "--set fsdp.sharding_strategy=shard_grad_op");
      Run0(np, "zero3" + tag, base + "--set fsdp.sharding_strategy=full_shard");
      // Checkpointing recomputes the same bytes, so it is compared with no_shard without it.
      Run0(np, "zero3ckpt" + tag,
           base +
               "--activation-checkpointing --set elm.zero_stage=3 --set "
               "elm.overlap_reduction=false");
      ExpectSameRun("ddp" + tag, "blocking" + tag);
      ExpectSameRun("ddp" + tag, "zero1" + tag);
      ExpectSameRun("ddp" + tag, "zero2" + tag);
      ExpectSameRun("ddp" + tag, "zero3" + tag);
      ExpectSameRun("ddp" + tag, "zero3ckpt" + tag);
      // The sharded checkpoint: one moments file per rank, named by the manifest.
      const auto manifest =
          nlohmann::json::parse(ReadTextFile(Ckpt("zero2" + tag, 6) + "/manifest.json"));
      EXPECT_EQ(manifest["world_size"].get<int>(), np);
      EXPECT_EQ(manifest["moment_shards"].size(), static_cast<size_t>(np));
      EXPECT_FALSE(fs::exists(Ckpt("zero2" + tag, 6) + "/optimizer.safetensors"));
      // Its moments equal no_shard's single file, tensor by tensor.
      TrainModel a(LoadHfConfig(Ckpt("ddp" + tag, 6) + "/config.json"));
      TrainModel b(LoadHfConfig(Ckpt("ddp" + tag, 6) + "/config.json"));
      LoadCheckpoint(Ckpt("ddp" + tag, 6), a.params());
      LoadCheckpoint(Ckpt("zero2" + tag, 6), b.params());
      EXPECT_TRUE(a.params().m == b.params().m);
      EXPECT_TRUE(a.params().v == b.params().v);
      TrainModel c(LoadHfConfig(Ckpt("ddp" + tag, 6) + "/config.json"));
      LoadCheckpoint(Ckpt("zero3" + tag, 6), c.params());
      EXPECT_TRUE(a.params().m == c.params().m);
      EXPECT_TRUE(a.params().v == c.params().v);
    }
  }
  // bf16 gradient reduction: the same in every mode too (and not the f32 run).
  Run0(2, "ddp_bf16", "--set fsdp.gradient_reduction_datatype=bfloat16");
  Run0(2, "zero2_bf16", "--set fsdp.gradient_reduction_datatype=bfloat16 --set elm.zero_stage=2");
  ExpectSameRun("ddp_bf16", "zero2_bf16");
  EXPECT_FALSE(ReadTextFile(Ckpt("ddp_bf16", 6) + "/model.safetensors") ==
               ReadTextFile(Ckpt("ddp2tiny", 6) + "/model.safetensors"));
  // fsdp.parameter_datatype bfloat16 (bf16 matrix products over f32 master weights): full_shard
  // gathers the f32 weights, so it equals no_shard in that precision too.
  Run0(2, "ddp_bf16p", "--set fsdp.parameter_datatype=bfloat16");
  Run0(2, "zero3_bf16p", "--set fsdp.parameter_datatype=bfloat16 --set elm.zero_stage=3");
  ExpectSameRun("ddp_bf16p", "zero3_bf16p");
  // LoRA under full_shard: the adapter is what is sharded and gathered per layer (the frozen
  // base stays whole); its losses, gradient norms and adapter equal no_shard's, bit for bit.
  std::string out, err, lora;
  ASSERT_EQ(test::InitLoraBase(yaml_, dir_, &lora, &out, &err), 0) << out << err;
  Run0(2, "lora_ddp", lora + "--set elm.zero_stage=0");
  Run0(2, "lora_zero3", lora + "--set elm.zero_stage=3");
  const auto sa = Steps(Log("lora_ddp")), sb = Steps(Log("lora_zero3"));
  ASSERT_EQ(sa.size(), 6u);
  ASSERT_EQ(sb.size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(sa[i]["loss"].get<double>(), sb[i]["loss"].get<double>()) << i;
    EXPECT_EQ(sa[i]["grad_norm"].get<double>(), sb[i]["grad_norm"].get<double>()) << i;
  }
  EXPECT_TRUE(ReadTextFile(Ckpt("lora_ddp", 6) + "/adapter_model.safetensors") ==
              ReadTextFile(Ckpt("lora_zero3", 6) + "/adapter_model.safetensors"));
}

// full_shard through 4 → 2 → 1 ranks (the bit-for-bit comparison with no_shard is the test
// above, release only; this one is what the ASan stage runs of full_shard): a 4-rank run's step-3
// checkpoint resumes on 2 ranks with activation checkpointing for one step, and that checkpoint
// in one process to the end, within float noise of the straight 4-rank run (the accumulation
// groups the same samples differently).
TEST_F(TrainShardingRun, FullShardResumesOnFourTwoOneRanks) {
  Run0(4, "four", "--set common.accum_freq=1 --set elm.zero_stage=3");
  ASSERT_TRUE(fs::exists(Ckpt("four", 3) + "/manifest.json"));
  const std::string label = "chain";
  fs::create_directories(dir_ + "/results/" + label + "/checkpoints");
  fs::copy(Ckpt("four", 3), Ckpt(label, 3), fs::copy_options::recursive);
  fs::copy(Log("four"), Log(label));
  Run0(2, label,
       "--activation-checkpointing --set common.accum_freq=2 --set elm.zero_stage=3 "
       "--set elm.max_steps=4 --resume " +
           Ckpt(label, 3));
  ASSERT_TRUE(fs::exists(Ckpt(label, 4) + "/manifest.json"));
  const std::string err =
      Run0(0, label, "--set common.accum_freq=4 --set elm.zero_stage=3 --resume " + Ckpt(label, 4));
  const auto straight = Steps(Log("four")), resumed = Steps(Log(label));
  ASSERT_EQ(resumed.size(), 6u) << err;
  for (size_t i = 0; i < 6; ++i) {
    const double a = straight[i]["loss"].get<double>(), b = resumed[i]["loss"].get<double>();
    EXPECT_LE(std::fabs(a - b), 1e-6 * std::fabs(a)) << "step " << i + 1;
  }
  const std::vector<float> wa = Weights(Ckpt("four", 6)), wb = Weights(Ckpt(label, 6));
  ASSERT_EQ(wa.size(), wb.size());
  float max_w = 0;
  for (const float w : wa) max_w = std::max(max_w, std::fabs(w));
  EXPECT_LE(test::MaxAbsDiff(wa.data(), wb.data(), wa.size()), 1e-4f * max_w);
}

// 4 ranks × accum_freq 1 write sharded checkpoints at steps 3 and 6; resuming step 3 on 2 ranks
// × accum_freq 2 and in one process × accum_freq 4 (the same global batch) ends where the
// 4-rank run ends, within float noise (the accumulation groups the same samples differently).
TEST_F(TrainShardingRun, ResumeOnAnotherRankCount) {
  Run0(4, "four", "--set common.accum_freq=1 --set elm.zero_stage=2");
  ASSERT_TRUE(fs::exists(Ckpt("four", 3) + "/manifest.json"));
  for (const auto& [np, accum] : {std::pair{2, 2}, std::pair{0, 4}}) {
    const std::string label = "from4on" + std::to_string(np);
    fs::create_directories(dir_ + "/results/" + label + "/checkpoints");
    fs::copy(Ckpt("four", 3), Ckpt(label, 3), fs::copy_options::recursive);
    fs::copy(Log("four"), Log(label));
    const std::string err = Run0(np, label,
                                 "--set common.accum_freq=" + std::to_string(accum) +
                                     " --set elm.zero_stage=1 --resume " + Ckpt(label, 3));
    const auto straight = Steps(Log("four")), resumed = Steps(Log(label));
    ASSERT_EQ(resumed.size(), 6u) << err;
    for (size_t i = 0; i < 6; ++i) {
      const double a = straight[i]["loss"].get<double>(), b = resumed[i]["loss"].get<double>();
      EXPECT_LE(std::fabs(a - b), 1e-6 * std::fabs(a)) << label << " step " << i + 1;
    }
    const std::vector<float> wa = Weights(Ckpt("four", 6)), wb = Weights(Ckpt(label, 6));
    ASSERT_EQ(wa.size(), wb.size());
    float max_w = 0;
    for (const float w : wa) max_w = std::max(max_w, std::fabs(w));
    EXPECT_LE(test::MaxAbsDiff(wa.data(), wb.data(), wa.size()), 1e-4f * max_w) << label;
  }
  // A different global batch is refused, naming both.
  std::string err;
  EXPECT_NE(Run(2, "four", "--set common.accum_freq=1 --resume " + Ckpt("four", 3), &err), 0);
  EXPECT_NE(err.find("4 MPI rank(s) with 8 sequences per step"), std::string::npos) << err;
}

// Rank 1 dies (SIGKILL) before writing its shard of step 6: the job fails, step 3 stays the
// newest complete checkpoint, and auto_resume continues from it to the straight run's bytes.
TEST_F(TrainShardingRun, KilledRankLeavesThePreviousCheckpoint) {
  std::string err;
  EXPECT_NE(
      Run(2, "killed", "--set elm.zero_stage=1", &err, "ELM_TEST_KILL_RANK_IN_CHECKPOINT=1:6"), 0);
  EXPECT_EQ(FindLatestCheckpoint(dir_ + "/results/killed"), Ckpt("killed", 3));
  EXPECT_FALSE(fs::exists(Ckpt("killed", 6) + "/DONE"));
  Run0(2, "killed", "--set elm.zero_stage=1 --set common.auto_resume=true");
  Run0(2, "straight", "--set elm.zero_stage=1");
  EXPECT_TRUE(ReadTextFile(Ckpt("killed", 6) + "/model.safetensors") ==
              ReadTextFile(Ckpt("straight", 6) + "/model.safetensors"));
  for (int r = 0; r < 2; ++r)
    EXPECT_TRUE(ReadTextFile(Ckpt("killed", 6) + "/" + MomentShardName(r, 2)) ==
                ReadTextFile(Ckpt("straight", 6) + "/" + MomentShardName(r, 2)));
}

// Ranks started with different configs (Open MPI's MPMD form, `-np 1 A : -np 1 B`) stop at
// start-up, every rank naming rank 0's view beside its own.
TEST_F(TrainShardingRun, RanksThatDisagreeStopClearly) {
  std::string out, err;
  // Two programs (mpirun's MPMD form): rank 1 runs another config.
  const std::string cmd = test::MpirunCommand(mpirun_, 1) + Args("disagree", "") + " : -np 1 " +
                          Args("disagree", "--set elm.zero_stage=1");
  EXPECT_NE(test::RunShell(cmd, &out, &err), 0);
  EXPECT_NE(err.find("the ranks disagree"), std::string::npos) << err;
  EXPECT_NE(err.find("rank 0 has config hash"), std::string::npos) << err;
}

}  // namespace train_sharding_test
}  // namespace elm
