// bf16 mixed precision in training: the bf16 matrix products against the f32 ones on ragged
// shapes (several reduction blocks included), and a short bf16 run against the same run in f32.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "kernels/matmul.h"
#include "test_util.h"
#include "train/train_config.h"
#include "train/train_gemm.h"
#include "train/trainer.h"

namespace elm {
namespace train_precision_test {
namespace fs = std::filesystem;

std::vector<float> Random(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// |got − want| ≤ tol · bound elementwise, where bound[i] = Σ|a||b| of that output's dot product
// (bf16 operands carry 8 significant bits: 2⁻⁸ relative per product, docs/numerics.md).
void ExpectClose(const std::vector<float>& got, const std::vector<float>& want,
                 const std::vector<float>& bound, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_LE(std::fabs(got[i] - want[i]), 8e-3f * bound[i] + 1e-6f)
        << what << " element " << i << ": " << got[i] << " vs " << want[i];
}

std::vector<float> Abs(std::vector<float> v) {
  for (auto& x : v) x = std::fabs(x);
  return v;
}

TEST(TrainGemm, Bf16MatchesF32OnRaggedShapes) {
  std::mt19937 rng(7);
  // (N, C, OC): tails of the 6-row kernel tile, the 48-column task and the 1024-column block.
  const int64_t shapes[][3] = {{1, 1, 1},     {7, 13, 5},    {37, 70, 53},  {300, 96, 260},
                               {1100, 40, 9}, {5, 2100, 50}, {64, 32, 1030}};
  for (const auto& s : shapes) {
    const int64_t N = s[0], C = s[1], OC = s[2];
    SCOPED_TRACE("N=" + std::to_string(N) + " C=" + std::to_string(C) +
                 " OC=" + std::to_string(OC));
    const auto inp = Random(N * C, rng), w = Random(OC * C, rng), dout = Random(N * OC, rng);
    TrainGemm bf16;
    bf16.set_bf16(true);

    std::vector<float> out(N * OC), ref(N * OC), bound(N * OC);
    bf16.Forward(out.data(), inp.data(), w.data(), N, C, OC);
    MatMulForward(ref.data(), inp.data(), w.data(), N, C, OC);
    MatMulForward(bound.data(), Abs(inp).data(), Abs(w).data(), N, C, OC);
    ExpectClose(out, ref, bound, "forward");

    // Accumulating backward: start both from the same nonzero gradients.
    const auto dinp0 = Random(N * C, rng), dw0 = Random(OC * C, rng);
    std::vector<float> dinp = dinp0, dw = dw0, dinp_ref = dinp0, dw_ref = dw0;
    bf16.Backward(dinp.data(), dw.data(), dout.data(), inp.data(), w.data(), N, C, OC);
    MatMulBackward(dinp_ref.data(), dw_ref.data(), dout.data(), inp.data(), w.data(), N, C, OC);
    std::vector<float> bdinp(N * C, 0.0f), bdw(OC * C, 0.0f);
    MatMulBackward(bdinp.data(), bdw.data(), Abs(dout).data(), Abs(inp).data(), Abs(w).data(), N, C,
                   OC);
    for (size_t i = 0; i < bdinp.size(); ++i) bdinp[i] += std::fabs(dinp0[i]);
    for (size_t i = 0; i < bdw.size(); ++i) bdw[i] += std::fabs(dw0[i]);
    ExpectClose(dinp, dinp_ref, bdinp, "dinp");
    ExpectClose(dw, dw_ref, bdw, "dw");

    // Null gradients are skipped (a frozen weight, the first layer's input).
    std::vector<float> dw_only = dw0;
    bf16.Backward(nullptr, dw_only.data(), dout.data(), inp.data(), w.data(), N, C, OC);
    EXPECT_EQ(dw_only, dw);
  }
}

TEST(TrainGemm, Bf16IsDeterministic) {
  std::mt19937 rng(3);
  const int64_t N = 200, C = 1500, OC = 77;
  const auto inp = Random(N * C, rng), w = Random(OC * C, rng);
  TrainGemm g;
  g.set_bf16(true);
  std::vector<float> a(N * OC), b(N * OC);
  g.Forward(a.data(), inp.data(), w.data(), N, C, OC);
  g.Forward(b.data(), inp.data(), w.data(), N, C, OC);
  EXPECT_EQ(a, b);
}

// A short run of the tiny test model in bf16 mixed precision ends close to the same run in f32.
TEST(TrainPrecision, Bf16RunTracksF32) {
  const std::string dir = test::TempDir("train_precision");
  const std::string yaml = dir + "/tiny.yaml";
  std::ofstream(yaml) << test::TinyTrainYaml(dir, /*save_every=*/100, /*val_batches=*/4,
                                             /*keep_last_checkpoints=*/1);
  auto run = [&](const std::string& label, bool bf16) {
    TrainOptions o;
    o.verbose = false;
    return RunTraining(
        LoadTrainConfig(yaml, {"common.run_label=" + label, "scheduler.max_iterations=40",
                               "common.eval_every_k_iterations=40",
                               std::string("common.mixed_precision=") + (bf16 ? "true" : "false")}),
        o);
  };
  const TrainResult f32 = run("f32", false);
  const TrainResult bf16 = run("bf16", true);
  ASSERT_EQ(bf16.steps, 40);
  EXPECT_LT(bf16.val_loss, bf16.first_loss - 0.5);  // it learns
  EXPECT_NEAR(bf16.first_loss, f32.first_loss, 0.01 * f32.first_loss);
  EXPECT_NEAR(bf16.val_loss, f32.val_loss, 0.02 * f32.val_loss)
      << "bf16 " << bf16.val_loss << " vs f32 " << f32.val_loss;
  fs::remove_all(dir);
}

}  // namespace train_precision_test
}  // namespace elm
