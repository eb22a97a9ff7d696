// Data-parallel training over MPI (docs/training.md, "Data parallel (MPI)"): `mpirun -np 2 elm
// train` with train_batch_size0 B and accum_freq k matches one process with B and accum_freq 2k
// within float tolerance; only rank 0 prints, logs and writes checkpoints; a 2-rank run resumed
// halfway ends with the same bytes as a straight 2-rank run. The mpirun tests skip themselves when
// elm was built without MPI or no mpirun is installed.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/mmap_file.h"
#include "config/hf_config.h"
#include "io/safetensors.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "train/data_loader.h"
#include "train/distributed.h"
#include "train/train_model.h"

#ifndef ELM_MPIEXEC
#define ELM_MPIEXEC ""
#endif

namespace elm {
namespace train_mpi_test {
namespace fs = std::filesystem;

// The mpirun CMake found, else the one on PATH; "" when there is none.
std::string FindMpirun() {
  if (const std::string configured = ELM_MPIEXEC;
      !configured.empty() && ::access(configured.c_str(), X_OK) == 0)
    return configured;
  std::string out, err;
  if (test::RunShell("command -v mpirun", &out, &err) != 0) return "";
  out.erase(out.find_last_not_of(" \n") + 1);
  return out;
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// The step and validation lines of a train_log.jsonl.
struct Log {
  std::vector<nlohmann::json> steps, vals;
};
Log ReadLog(const std::string& path) {
  Log log;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    (nlohmann::json::parse(line).contains("val_loss") ? log.vals : log.steps)
        .push_back(nlohmann::json::parse(line));
  return log;
}

// A checkpoint's weights as one flat f32 slab.
std::vector<float> Weights(const std::string& dir) {
  TrainModel tm(LoadHfConfig(dir + "/config.json"));
  LoadCheckpoint(dir, tm.params());
  const SlabFloats& w = tm.params().params;
  return {w.begin(), w.end()};
}

double RelDiff(double a, double b) {
  return std::fabs(a - b) / std::max(std::fabs(a), 1e-30);
}

// Rank r of W sees rows [r·B, (r+1)·B) of the batch a single loader with W·B rows would form,
// across epoch boundaries, and every rank keeps the single loader's position.
TEST(TrainMpi, LoaderShardsAreDisjointSlicesOfTheGlobalBatch) {
  constexpr int kSamples = 11, kWidth = 4, kB = 2, kWorld = 3;
  std::vector<int32_t> data;
  for (int i = 0; i < kSamples; ++i)
    for (int t = 0; t < kWidth; ++t) data.push_back(100 * i + t);
  auto set = std::make_shared<SampleSet>(data, kWidth);
  DataLoader global(set, kB * kWorld, 7, true, {});
  std::vector<DataLoader> shards;
  for (int r = 0; r < kWorld; ++r) shards.emplace_back(set, kB, 7, true, BatchIds{});
  const int T = kWidth - 1;
  std::vector<int> gi(kB * kWorld * T), gt(gi.size()), si(kB * T), st(si.size());
  for (int step = 0; step < 5; ++step) {  // 30 samples: three epochs of 11
    global.Next(gi.data(), gt.data());
    for (int r = 0; r < kWorld; ++r) {
      shards[r].Next(si.data(), st.data(), r, kWorld);
      EXPECT_TRUE(std::equal(si.begin(), si.end(), gi.begin() + r * kB * T)) << step << " " << r;
      EXPECT_TRUE(std::equal(st.begin(), st.end(), gt.begin() + r * kB * T)) << step << " " << r;
      EXPECT_EQ(shards[r].position().epoch, global.position().epoch);
      EXPECT_EQ(shards[r].position().index, global.position().index);
    }
  }
}

TEST(TrainMpi, AloneWithoutALauncher) {
  // elm_tests is not started by mpirun: Init() must leave MPI alone and the job is one process.
  if (std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE"))
    GTEST_SKIP() << "the test binary itself runs under an MPI launcher";
  Distributed::Init();
  EXPECT_EQ(Distributed::size(), 1);
  EXPECT_EQ(Distributed::rank(), 0);
  float g[2] = {1.5f, -2.0f};
  Distributed::AllReduceMean(g, 2);
  EXPECT_EQ(g[0], 1.5f);
  EXPECT_TRUE(Distributed::AllEqual(42));
  Distributed::Finalize();
}

// DetectLauncher on fake environments: each launcher's variables, the size it announces, and
// srun without an MPI plugin (docs/training.md, "Launching: mpirun, hostfiles, binding, Slurm").
LaunchEnv DetectIn(const std::map<std::string, std::string>& env) {
  return DetectLauncher([&](const char* var) -> const char* {
    const auto it = env.find(var);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

TEST(TrainMpi, DetectsLaunchersFromTheEnvironment) {
  const LaunchEnv none = DetectIn({});
  EXPECT_FALSE(none.mpi);
  EXPECT_EQ(none.size, 1);
  EXPECT_EQ(none.srun_tasks, 0);
  // Open MPI's mpirun (5.x sets PMIX_RANK as well; its own variable wins).
  LaunchEnv e = DetectIn({{"OMPI_COMM_WORLD_SIZE", "4"}, {"PMIX_RANK", "1"}});
  EXPECT_TRUE(e.mpi);
  EXPECT_EQ(e.size, 4);
  EXPECT_EQ(e.by, "OMPI_COMM_WORLD_SIZE");
  // MPICH/Intel MPI Hydra and srun --mpi=pmi2.
  e = DetectIn({{"PMI_SIZE", "3"}, {"PMI_RANK", "2"}, {"SLURM_STEP_NUM_TASKS", "3"}});
  EXPECT_TRUE(e.mpi);
  EXPECT_EQ(e.size, 3);
  EXPECT_EQ(e.by, "PMI_SIZE");
  // srun --mpi=pmix: PMIX_RANK and Slurm's step size.
  e = DetectIn({{"PMIX_RANK", "0"},
                {"PMIX_NAMESPACE", "slurm.pmix.42.0"},
                {"SLURM_PROCID", "0"},
                {"SLURM_NTASKS", "8"},
                {"SLURM_STEP_NUM_TASKS", "8"}});
  EXPECT_TRUE(e.mpi);
  EXPECT_EQ(e.size, 8);
  EXPECT_EQ(e.by, "PMIX_RANK");
  EXPECT_EQ(e.srun_tasks, 0);
  // PMIx without Slurm: PMIX_SIZE when set, else unknown (MPI_Comm_size tells).
  e = DetectIn({{"PMIX_RANK", "1"}, {"PMIX_SIZE", "2"}});
  EXPECT_TRUE(e.mpi);
  EXPECT_EQ(e.size, 2);
  e = DetectIn({{"PMIX_RANK", "1"}});
  EXPECT_TRUE(e.mpi);
  EXPECT_EQ(e.size, 1);
  // srun --mpi=none with several tasks: no MPI, flagged so Init refuses it.
  e = DetectIn({{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}, {"SLURM_STEP_NUM_TASKS", "2"}});
  EXPECT_FALSE(e.mpi);
  EXPECT_EQ(e.srun_tasks, 2);
  // One srun task, or an sbatch script's own environment (no step variables): alone.
  e = DetectIn({{"SLURM_PROCID", "0"}, {"SLURM_STEP_NUM_TASKS", "1"}});
  EXPECT_FALSE(e.mpi);
  EXPECT_EQ(e.srun_tasks, 0);
  e = DetectIn({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "16"}});
  EXPECT_FALSE(e.mpi);
  EXPECT_EQ(e.srun_tasks, 0);
  // Malformed values are not a launcher.
  EXPECT_FALSE(DetectIn({{"OMPI_COMM_WORLD_SIZE", "four"}, {"PMIX_RANK", "-1"}}).mpi);
}

// srun --mpi=none -n 2 elm train: refused before anything is read, naming the fix.
TEST(TrainMpi, SrunWithoutAnMpiPluginIsRefused) {
  const std::string dir = test::TempDir("train_srun");
  std::ofstream(dir + "/tiny.yaml") << test::TinyTrainYaml(dir, 3, 2, 0);
  std::string out, err;
  const int rc =
      test::RunShell(std::string("env -u OMPI_COMM_WORLD_SIZE -u PMI_SIZE -u PMIX_RANK ") +
                         "SLURM_STEP_NUM_TASKS=2 SLURM_PROCID=0 " + ELM_BINARY +
                         " train --quiet --config " + dir + "/tiny.yaml",
                     &out, &err);
  fs::remove_all(dir);
  EXPECT_NE(rc, 0);
  EXPECT_NE(err.find("started by srun as one of 2 tasks"), std::string::npos) << err;
  EXPECT_NE(err.find("srun --mpi=pmix"), std::string::npos) << err;
}

class TrainMpiRun : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!Distributed::compiled_with_mpi())
      GTEST_SKIP() << "elm was built without MPI (ELM_MPI=OFF or no MPI found by CMake)";
    mpirun_ = FindMpirun();
    if (mpirun_.empty()) GTEST_SKIP() << "mpirun not found (Debian: apt install openmpi-bin)";
    dir_ = test::TempDir("train_mpi");
    yaml_ = dir_ + "/tiny.yaml";
    // The tiny setup of train_resume_test.cc, global batch 8 × 16 tokens over 2 ranks; validation
    // every 3 steps over 3 batches (rank 0 takes batches 0 and 2, rank 1 batch 1).
    std::ofstream(yaml_) << test::TinyTrainYaml(dir_, /*save_every=*/3, /*val_batches=*/3,
                                                /*keep_last_checkpoints=*/0);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  // One thread per process: the ranks share the machine with the other tests. Under
  // The single-process runs use the ranks' thread settings (test::MpirunCommand).
  static constexpr const char* kEnv = "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 ";
  std::string TrainArgs(const std::string& label, const std::string& extra) const {
    return std::string(ELM_BINARY) + " train --config " + yaml_ +
           " --set common.run_label=" + label + " " + extra;
  }
  int Mpi(const std::string& label, const std::string& extra, std::string* out,
          std::string* err) const {
    return test::RunShell(test::MpirunCommand(mpirun_, 2) + TrainArgs(label, extra), out, err);
  }
  int Alone(const std::string& label, const std::string& extra, std::string* out,
            std::string* err) const {
    return test::RunShell(std::string(kEnv) + TrainArgs(label, extra), out, err);
  }
  std::string Checkpoint(const std::string& label, int step) const {
    return dir_ + "/results/" + label + "/checkpoints/" + CheckpointName(step);
  }
  std::string mpirun_, dir_, yaml_;
};

TEST_F(TrainMpiRun, TwoRanksMatchOneProcessWithAccumulation) {
  std::string out, err;
  // 2 ranks × train_batch_size0 2 × accum_freq 2 = one process × 2 × accum_freq 4.
  ASSERT_EQ(Mpi("mpi", "", &out, &err), 0) << out << err;
  // Rank 0 alone reports: one summary, one model line, one line per checkpoint; rank 1 is silent.
  EXPECT_EQ(Count(out, "trained steps 0..6"), 1u) << out;
  EXPECT_EQ(Count(err, "model: "), 1u) << err;
  EXPECT_NE(err.find("2 MPI ranks × 2 sequences × 2 micro-batches"), std::string::npos) << err;
  EXPECT_EQ(Count(err, "checkpoint: "), 2u) << err;
  EXPECT_EQ(Count(err, "validation loss"), 2u) << err;
  EXPECT_EQ(err.find("error"), std::string::npos) << err;
  ASSERT_EQ(Alone("single", "--set common.accum_freq=4", &out, &err), 0) << out << err;

  // One log with each step once (two writers would interleave or repeat lines).
  const Log mpi = ReadLog(dir_ + "/results/mpi/train_log.jsonl");
  const Log one = ReadLog(dir_ + "/results/single/train_log.jsonl");
  ASSERT_EQ(mpi.steps.size(), 6u);
  ASSERT_EQ(one.steps.size(), 6u);
  ASSERT_EQ(mpi.vals.size(), 2u);
  ASSERT_EQ(one.vals.size(), 2u);
  double loss_err = 0, norm_err = 0, val_err = 0;
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(mpi.steps[i]["step"].get<int64_t>(), static_cast<int64_t>(i + 1));
    EXPECT_EQ(mpi.steps[i]["tokens"].get<int64_t>(),
              one.steps[i]["tokens"].get<int64_t>());  // 8 × 16 per step
    loss_err = std::max(
        loss_err, RelDiff(one.steps[i]["loss"].get<double>(), mpi.steps[i]["loss"].get<double>()));
    norm_err = std::max(norm_err, RelDiff(one.steps[i]["grad_norm"].get<double>(),
                                          mpi.steps[i]["grad_norm"].get<double>()));
  }
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(mpi.vals[i]["val_tokens"].get<int64_t>(), one.vals[i]["val_tokens"].get<int64_t>());
    val_err = std::max(val_err, RelDiff(one.vals[i]["val_loss"].get<double>(),
                                        mpi.vals[i]["val_loss"].get<double>()));
  }
  EXPECT_EQ(mpi.steps.back()["tokens"].get<int64_t>(), 6 * 8 * 16);

  // Checkpoints at 3 and 6, written once: no temporary files left by a second writer.
  EXPECT_EQ(ListCheckpoints(dir_ + "/results/mpi/checkpoints").size(), 2u);
  for (const auto& e : fs::recursive_directory_iterator(dir_ + "/results/mpi"))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
  const auto state =
      nlohmann::json::parse(ReadTextFile(Checkpoint("mpi", 6) + "/trainer_state.json"));
  EXPECT_EQ(state["world_size"].get<int>(), 2);

  const std::vector<float> a = Weights(Checkpoint("single", 6)), b = Weights(Checkpoint("mpi", 6));
  ASSERT_EQ(a.size(), b.size());
  // Adam divides by √v, so elements with tiny gradients turn float summation-order noise into
  // visible weight changes: one process with batch 4 × accum_freq 2 instead of 2 × 4 (the same
  // mathematics) already differs from it by 2.2e-5 in one embedding entry. The bounds hold the
  // worst element to the parity tests' 1e-4 and the mean to float noise.
  float max_w = 0;
  double sum_err = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    max_w = std::max(max_w, std::fabs(a[i]));
    sum_err += std::fabs(a[i] - b[i]);
  }
  const float max_err = test::MaxAbsDiff(a.data(), b.data(), a.size());
  const double mean_err = sum_err / static_cast<double>(a.size());
  std::printf(
      "2 ranks vs 1 process with accumulation after 6 steps: weights max abs diff %.3g, "
      "mean %.3g (max |w| %.3g); loss rel diff <= %.3g, grad norm <= %.3g, val loss <= "
      "%.3g\n",
      max_err, mean_err, max_w, loss_err, norm_err, val_err);
  EXPECT_LE(max_err, 1e-4f * max_w);
  EXPECT_LE(mean_err, 1e-7 * max_w);
  EXPECT_LE(loss_err, 1e-6);
  EXPECT_LE(norm_err, 1e-5);
  EXPECT_LE(val_err, 1e-6);

  // A 2-rank checkpoint is not resumed by one process (its global batch would halve).
  EXPECT_NE(
      Alone("single", "--set common.accum_freq=2 --resume " + dir_ + "/results/mpi", &out, &err),
      0);
  EXPECT_NE(err.find("2 MPI rank(s)"), std::string::npos) << err;
}

TEST_F(TrainMpiRun, ResumeUnderMpiIsBitExact) {
  std::string out, err;
  ASSERT_EQ(Mpi("straight", "--quiet", &out, &err), 0) << out << err;
  ASSERT_EQ(Mpi("resumed", "--quiet --set elm.max_steps=3", &out, &err), 0) << out << err;
  EXPECT_NE(out.find("trained steps 0..3"), std::string::npos) << out;
  ASSERT_EQ(Mpi("resumed", "--quiet --set common.auto_resume=true", &out, &err), 0) << out << err;
  EXPECT_NE(out.find("trained steps 3..6"), std::string::npos) << out;

  const std::string a = Checkpoint("straight", 6), b = Checkpoint("resumed", 6);
  for (const char* f : {"model.safetensors", "optimizer.safetensors", "trainer_state.json"})
    EXPECT_TRUE(ReadTextFile(a + "/" + f) == ReadTextFile(b + "/" + f)) << f;
  const Log log = ReadLog(dir_ + "/results/resumed/train_log.jsonl");
  ASSERT_EQ(log.steps.size(), 6u);
  for (size_t i = 0; i < 6; ++i)
    EXPECT_EQ(log.steps[i]["step"].get<int64_t>(), static_cast<int64_t>(i + 1));
  EXPECT_EQ(log.vals.size(), 2u);
}

// LoRA under MPI: the adapter's gradients are the ones averaged, and the dropout masks follow the
// micro-batch's place in the global batch, so 2 ranks × accum_freq 2 match one process with
// accum_freq 4 (dropout on) as full training does.
TEST_F(TrainMpiRun, LoraTwoRanksMatchOneProcess) {
  std::string out, err, lora;
  ASSERT_EQ(test::InitLoraBase(yaml_, dir_, &lora, &out, &err), 0) << out << err;
  ASSERT_EQ(Mpi("lora_mpi", lora, &out, &err), 0) << out << err;
  EXPECT_NE(err.find("LoRA: r 2"), std::string::npos) << err;
  ASSERT_EQ(Alone("lora_single", lora + "--set common.accum_freq=4", &out, &err), 0) << out << err;
  const Log mpi = ReadLog(dir_ + "/results/lora_mpi/train_log.jsonl");
  const Log one = ReadLog(dir_ + "/results/lora_single/train_log.jsonl");
  ASSERT_EQ(mpi.steps.size(), 6u);
  ASSERT_EQ(one.steps.size(), 6u);
  for (size_t i = 0; i < 6; ++i)
    EXPECT_LE(RelDiff(one.steps[i]["loss"].get<double>(), mpi.steps[i]["loss"].get<double>()), 1e-6)
        << "step " << i + 1;
  const TensorStore a(Checkpoint("lora_single", 6) + "/adapter_model.safetensors");
  const TensorStore b(Checkpoint("lora_mpi", 6) + "/adapter_model.safetensors");
  ASSERT_EQ(a.all().size(), b.all().size());
  for (const auto& [name, view] : a.all()) {
    const TensorView& other = b.Get(name);
    ASSERT_EQ(view->shape, other.shape) << name;
    const auto* x = static_cast<const float*>(view->data);
    const auto* y = static_cast<const float*>(other.data);
    float max_w = 0;
    for (int64_t i = 0; i < view->numel(); ++i) max_w = std::max(max_w, std::fabs(x[i]));
    EXPECT_LE(test::MaxAbsDiff(x, y, static_cast<size_t>(view->numel())), 1e-4f * max_w) << name;
  }
}

}  // namespace train_mpi_test
}  // namespace elm
