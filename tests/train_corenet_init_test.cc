// elm train --init-from a CoreNet training checkpoint (docs/training.md, "Continuing a CoreNet
// run"): the weights, AdamW moments and step come from the .pt; the run continues at that step.
#include <gtest/gtest.h>

#include <cstring>

#include "base/dtype.h"
#include "config/hf_config.h"
#include "io/corenet_checkpoint.h"
#include "io/pytorch_checkpoint.h"
#include "test_util.h"
#include "train/params.h"

namespace elm {
namespace {

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

}  // namespace
}  // namespace elm
