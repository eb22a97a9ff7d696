// Launching training as docs/training.md ("Launching") says: mpirun with a hostfile and core
// binding; only rank 0 prints progress, messages and the summary (once per step, not once per
// rank); activation checkpointing (--activation-checkpointing) under 2 ranks logs the same losses
// and gradient norms, bit for bit, as without it, and the summary reports peak memory. Skips
// without mpirun or an MPI build, as tests/train_mpi_test.cc does.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"
#include "train/distributed.h"

#ifndef ELM_MPIEXEC
#define ELM_MPIEXEC ""
#endif

namespace elm {
namespace train_launch_test {
namespace fs = std::filesystem;

size_t Occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

std::vector<nlohmann::json> StepLines(const std::string& path) {
  std::vector<nlohmann::json> v;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (!j.contains("val_loss")) v.push_back(j);
  }
  return v;
}

class TrainLaunch : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::TempDir("train_launch");
    yaml_ = dir_ + "/tiny.yaml";
    std::ofstream(yaml_) << test::TinyTrainYaml(dir_, /*save_every=*/100, /*val_batches=*/1,
                                                /*keep_last_checkpoints=*/0);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Train(const std::string& label, const std::string& extra) const {
    return std::string(ELM_BINARY) + " train --config " + yaml_ +
           " --set common.run_label=" + label + " " + extra;
  }
  std::string Log(const std::string& label) const {
    return dir_ + "/results/" + label + "/train_log.jsonl";
  }
  // mpirun -np 2 with `launch` options; "" when MPI cannot run here (the test then skips).
  std::string Mpirun(const std::string& launch) const {
    if (!Distributed::compiled_with_mpi()) return "";
    std::string path = ELM_MPIEXEC;
    if (path.empty() || ::access(path.c_str(), X_OK) != 0) {
      std::string out, err;
      if (test::RunShell("command -v mpirun", &out, &err) != 0) return "";
      path = out.substr(0, out.find_last_not_of(" \n") + 1);
    }
    return test::MpirunCommand(path, 2, launch);
  }
  std::string dir_, yaml_;
};

TEST_F(TrainLaunch, SingleProcessReportsMemoryAndCheckpointingKeepsTheLosses) {
  std::string out, err;
  ASSERT_EQ(test::RunShell(Train("plain", ""), &out, &err), 0) << err;
  EXPECT_NE(out.find("memory: peak RSS"), std::string::npos) << out;
  EXPECT_NE(out.find("activation checkpointing off"), std::string::npos) << out;
  ASSERT_EQ(test::RunShell(Train("ckpt", "--activation-checkpointing"), &out, &err), 0) << err;
  EXPECT_NE(out.find("activation checkpointing on"), std::string::npos) << out;
  EXPECT_NE(err.find("; activation checkpointing"), std::string::npos) << err;
  const auto a = StepLines(Log("plain")), b = StepLines(Log("ckpt"));
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["loss"].get<double>(), b[i]["loss"].get<double>()) << i;
    EXPECT_EQ(a[i]["grad_norm"].get<double>(), b[i]["grad_norm"].get<double>()) << i;
    EXPECT_GT(a[i]["peak_rss_mb"].get<double>(), 0) << i;
    // 2 layers whose logits dominate: the saving is below the log's 0.1 MB rounding here.
    EXPECT_LE(b[i]["activation_mb"].get<double>(), a[i]["activation_mb"].get<double>()) << i;
  }
}

TEST_F(TrainLaunch, MpirunWithHostfileAndBindingPrintsOnRankZeroOnly) {
  const std::string hosts = dir_ + "/hosts";
  std::ofstream(hosts) << "localhost slots=2\n";
  // Core binding needs two cores; a smaller machine oversubscribes unbound.
  const std::string bind = std::thread::hardware_concurrency() >= 2
                               ? "--map-by core --bind-to core"
                               : "--oversubscribe --bind-to none";
  const std::string mpirun = Mpirun("--hostfile " + hosts + " " + bind);
  if (mpirun.empty()) GTEST_SKIP() << "no MPI build or no mpirun (Debian: openmpi-bin)";
  std::string out, err;
  ASSERT_EQ(test::RunShell(mpirun + Train("plain", ""), &out, &err), 0) << out << err;
  ASSERT_EQ(test::RunShell(mpirun + Train("ckpt", "--activation-checkpointing"), &out, &err), 0)
      << out << err;
  // Progress lines, messages and the summary come from rank 0 alone.
  EXPECT_EQ(Occurrences(err, "step 6/6"), 1u) << err;
  EXPECT_EQ(Occurrences(err, "model: "), 1u) << err;
  EXPECT_EQ(Occurrences(out, "trained steps"), 1u) << out;
  EXPECT_EQ(Occurrences(out, "memory: peak RSS"), 1u) << out;
  const auto a = StepLines(Log("plain")), b = StepLines(Log("ckpt"));
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), 6u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["loss"].get<double>(), b[i]["loss"].get<double>()) << i;
    EXPECT_EQ(a[i]["grad_norm"].get<double>(), b[i]["grad_norm"].get<double>()) << i;
  }
}

}  // namespace train_launch_test
}  // namespace elm
