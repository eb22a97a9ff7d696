// Per-rank memory of a training run, by formula (docs/training.md "Memory plan"): what
// `elm train --dry-run` prints. The parts follow what the code holds: f32 master parameters,
// gradients and both AdamW moments (train/slab.h), the activations TrainModel saves for backward
// (exactly TrainModel::ActivationBytes's layout, with and without activation checkpointing), and
// the backward scratch and bf16 packing buffers. Sharding divides what ZeRO/FSDP divide:
//   no_shard       every rank holds everything (MPI data parallelism today)
//   zero1          the AdamW moments are split over the ranks
//   shard_grad_op  moments and gradients (ZeRO-2), plus one layer's gradients being reduced
//   full_shard     parameters too (ZeRO-3), plus the largest group of parameters gathered at
//                  once (a layer, or the tensors outside the layers) and one layer's gradients
// Under LoRA the sharded state is the adapter; the frozen base stays whole on every rank.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/model_config.h"

namespace elm {

enum class ShardingMode { kNoShard, kZero1, kShardGradOp, kFullShard };
constexpr ShardingMode kAllShardingModes[] = {ShardingMode::kNoShard, ShardingMode::kZero1,
                                              ShardingMode::kShardGradOp, ShardingMode::kFullShard};
// "no_shard", "zero1", "shard_grad_op", "full_shard" (CoreNet's fsdp.sharding_strategy names).
const char* ShardingModeName(ShardingMode m);

struct MemoryPlanInput {
  ModelConfig model;
  int seq_len = 2048;
  int micro_batch = 1;  // sequences per micro-batch on one rank
  int ranks = 1;
  ShardingMode mode = ShardingMode::kNoShard;
  bool activation_checkpointing = false;
  bool mixed_precision = false;   // bf16 matrix products: adds the packing buffers
  int64_t trainable_params = -1;  // the LoRA adapter's size; −1 = every parameter (full training)
};

struct MemoryPlan {
  int64_t parameters = 0;   // f32 weights this rank holds (and a gathered layer under full_shard)
  int64_t gradients = 0;    // f32 gradients (and the layer being reduced when sharded)
  int64_t moments = 0;      // AdamW m and v
  int64_t activations = 0;  // saved for backward (TrainModel::ActivationBytes)
  int64_t buffers = 0;      // backward scratch, bf16 packing, token ids
  int64_t total() const { return parameters + gradients + moments + activations + buffers; }
};

// Bytes per rank for `in` (all counts in bytes).
MemoryPlan PlanMemory(const MemoryPlanInput& in);
// Activation bytes TrainModel holds for one micro-batch of B×T tokens (the formula the model's
// Allocate follows).
int64_t ActivationBytesFor(const ModelConfig& m, int B, int T, bool checkpointing);
// The largest micro-batch (≥ 1) whose plan fits `budget` bytes, or 0 when not even one does.
int LargestMicroBatch(MemoryPlanInput in, int64_t budget);

// "24GB" (10⁹), "24GiB"/"24G" (2³⁰), "512MB", "512MiB"/"512M", "1.5TB", plain bytes. Throws
// elm::Error naming `what` for anything else.
int64_t ParseByteSize(const std::string& s, const std::string& what);
// "1.23 GB" style (10⁹-based, to match ParseByteSize's GB).
std::string FormatBytes(int64_t bytes);

// The dry run's report: for each rank count and sharding mode, the parts, the totals with and
// without checkpointing, and the largest micro-batch that fits `budget` (0 = no budget given).
std::string MemoryPlanReport(const MemoryPlanInput& base, const std::vector<int>& ranks,
                             int64_t budget);

}  // namespace elm
