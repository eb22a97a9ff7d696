// The memory plan (train/memory_plan.h, docs/training.md "Memory plan"): its activation formula
// equals what TrainModel holds (with and without checkpointing, on the tiny and d_mid shapes), the
// sharding modes divide what they should, the largest micro-batch fits and the next does not, and
// sizes parse with clear errors. `elm train --dry-run` prints the table.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "base/error.h"
#include "config/hf_config.h"
#include "test_util.h"
#include "train/memory_plan.h"
#include "train/train_model.h"

namespace elm {
namespace train_memory_plan_test {

ModelConfig Mid() {
  return LoadHfConfig(test::DataDir() + "/pytorch/d_mid_config.json");
}

TEST(MemoryPlan, ActivationFormulaMatchesTheModel) {
  for (const char* name : {"a_tiny_qknorm_tied", "b_tiny_noqknorm_untied"})
    for (bool ckpt : {false, true}) {
      const ModelConfig cfg =
          LoadHfConfig(test::DataDir() + "/conformance/" + name + "/config.json");
      TrainModel m(cfg);
      m.set_activation_checkpointing(ckpt);
      const int B = 3, T = 7;
      std::vector<int> ids(B * T, 1);
      m.Forward(ids.data(), ids.data(), B, T, {});
      EXPECT_EQ(m.ActivationBytes(), ActivationBytesFor(cfg, B, T, ckpt))
          << name << " checkpointing " << ckpt;
    }
  ModelConfig mid = Mid();
  for (bool glu : {true, false})
    for (bool ckpt : {false, true}) {
      mid.ffn_with_glu = glu;
      TrainModel m(mid);
      m.set_activation_checkpointing(ckpt);
      std::vector<int> ids(2 * 16, 3);
      m.Forward(ids.data(), ids.data(), 2, 16, {});
      EXPECT_EQ(m.ActivationBytes(), ActivationBytesFor(mid, 2, 16, ckpt))
          << "d_mid glu " << glu << " checkpointing " << ckpt;
    }
}

TEST(MemoryPlan, ShardingDividesWhatItShould) {
  MemoryPlanInput in;
  in.model = Mid();
  in.seq_len = 32;
  const int64_t P = in.model.ParamCount() * 4;
  const MemoryPlan one = PlanMemory(in);
  EXPECT_EQ(one.parameters, P);
  EXPECT_EQ(one.gradients, P);
  EXPECT_EQ(one.moments, 2 * P);
  in.ranks = 4;
  const MemoryPlan none = PlanMemory(in);
  EXPECT_EQ(none.total(), one.total()) << "no_shard replicates";
  in.mode = ShardingMode::kZero1;
  const MemoryPlan z1 = PlanMemory(in);
  EXPECT_EQ(z1.parameters, P);
  EXPECT_EQ(z1.gradients, P);
  EXPECT_NEAR(static_cast<double>(z1.moments), 2.0 * P / 4, 8.0);
  in.mode = ShardingMode::kShardGradOp;
  const MemoryPlan z2 = PlanMemory(in);
  EXPECT_EQ(z2.parameters, P);
  EXPECT_LT(z2.gradients, P);
  EXPECT_GT(z2.gradients, P / 4);  // a shard plus the layer being reduced
  EXPECT_EQ(z2.moments, z1.moments);
  in.mode = ShardingMode::kFullShard;
  const MemoryPlan z3 = PlanMemory(in);
  EXPECT_LT(z3.parameters, P);
  // full_shard: its range plus the largest group gathered at once, a decoder layer or the tensors
  // outside the layers (embeddings and final norm; tied here).
  {
    const ModelConfig& m = in.model;
    int64_t layer = 0;
    for (int l = 0; l < m.n_layers; ++l) layer = std::max(layer, m.LayerParams(l));
    const int64_t n = m.ParamCount(), outside = int64_t{m.vocab_size} * m.dim + m.dim;
    ASSERT_TRUE(m.tied_embeddings);
    EXPECT_EQ(z3.parameters, 4 * ((n + 3) / 4 + std::min(n, std::max(layer, outside))));
  }
  EXPECT_EQ(z3.gradients, z2.gradients);
  EXPECT_EQ(z3.activations, one.activations);
  EXPECT_LT(z3.total(), z2.total());
  EXPECT_LT(z2.total(), z1.total());
  EXPECT_LT(z1.total(), none.total());
  // One rank: every mode holds the same.
  in.ranks = 1;
  for (ShardingMode m : kAllShardingModes) {
    in.mode = m;
    EXPECT_EQ(PlanMemory(in).total(), one.total()) << ShardingModeName(m);
  }
  // Checkpointing only changes the activations.
  in.activation_checkpointing = true;
  const MemoryPlan ck = PlanMemory(in);
  EXPECT_LT(ck.activations, one.activations);
  EXPECT_EQ(ck.total() - ck.activations, one.total() - one.activations);
}

TEST(MemoryPlan, LoraShardsOnlyTheAdapter) {
  MemoryPlanInput in;
  in.model = Mid();
  in.seq_len = 16;
  in.trainable_params = 1000;
  const int64_t P = in.model.ParamCount() * 4;
  const MemoryPlan p = PlanMemory(in);
  EXPECT_EQ(p.parameters, P + 4000);
  EXPECT_EQ(p.gradients, 4000);
  EXPECT_EQ(p.moments, 8000);
}

TEST(MemoryPlan, LargestMicroBatchFitsAndTheNextDoesNot) {
  MemoryPlanInput in;
  in.model = PresetConfig("OpenELM-270M");
  in.seq_len = 2048;
  const int64_t budget = ParseByteSize("24GB", "--memory");
  for (bool ckpt : {false, true}) {
    in.activation_checkpointing = ckpt;
    const int b = LargestMicroBatch(in, budget);
    ASSERT_GT(b, 0);
    in.micro_batch = b;
    EXPECT_LE(PlanMemory(in).total(), budget);
    in.micro_batch = b + 1;
    EXPECT_GT(PlanMemory(in).total(), budget);
    in.micro_batch = 1;
  }
  in.activation_checkpointing = false;
  const int off = LargestMicroBatch(in, budget);
  in.activation_checkpointing = true;
  EXPECT_GT(LargestMicroBatch(in, budget), off);
  EXPECT_EQ(LargestMicroBatch(in, 1000), 0) << "nothing fits 1 kB";
}

TEST(MemoryPlan, ParsesSizes) {
  EXPECT_EQ(ParseByteSize("24GB", "x"), 24'000'000'000);
  EXPECT_EQ(ParseByteSize("24gib", "x"), 24LL << 30);
  EXPECT_EQ(ParseByteSize("24G", "x"), 24LL << 30);
  EXPECT_EQ(ParseByteSize("512MB", "x"), 512'000'000);
  EXPECT_EQ(ParseByteSize("1.5TB", "x"), 1'500'000'000'000);
  EXPECT_EQ(ParseByteSize("4096", "x"), 4096);
  for (const char* bad : {"", "GB", "24 parsecs", "-3GB", "1.2.3GB", "0"}) {
    try {
      ParseByteSize(bad, "--memory");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--memory"), std::string::npos) << e.what();
    }
  }
}

TEST(MemoryPlan, ReportListsEveryModeAndRankCount) {
  MemoryPlanInput in;
  in.model = Mid();
  in.seq_len = 64;
  const std::string r = MemoryPlanReport(in, {2, 8}, ParseByteSize("1GB", "x"));
  for (const char* want : {"no_shard", "zero1", "shard_grad_op", "full_shard", "max micro-batch"})
    EXPECT_NE(r.find(want), std::string::npos) << want << "\n" << r;
  size_t rows = 0;
  for (size_t p = r.find('\n'); p != std::string::npos; p = r.find('\n', p + 1)) ++rows;
  EXPECT_EQ(rows, 2u + 2 * 4) << r;
}

TEST(MemoryPlan, DryRunPrintsThePlan) {
  const std::string cfg = std::string(ELM_SOURCE_DIR) + "/configs/openelm_1_1B.yaml";
  std::string out, err;
  ASSERT_EQ(test::RunElm("train --dry-run '" + cfg + "' --ranks 4 --memory 24GB", &out, &err), 0)
      << err;
  EXPECT_NE(out.find("full_shard"), std::string::npos) << out;
  EXPECT_NE(out.find("max micro-batch"), std::string::npos) << out;
  EXPECT_NE(out.find("OpenELM-1_1B"), std::string::npos) << out;
  EXPECT_NE(test::RunElm("train --dry-run '" + cfg + "' --memory lots", &out, &err), 0);
  EXPECT_NE(err.find("--memory"), std::string::npos) << err;
  EXPECT_NE(test::RunElm("train --dry-run '" + cfg + "' --ranks 0", &out, &err), 0);
}

}  // namespace train_memory_plan_test
}  // namespace elm
