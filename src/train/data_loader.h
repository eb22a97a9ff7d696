// Batches of samples in a deterministic shuffled order. The order of epoch e is a Fisher–Yates
// permutation drawn from elm::Rng seeded with (seed, e), so the loader's whole state is its
// position (epoch, index): a checkpoint stores it and a resumed run sees the same batches. Under
// data parallelism every rank walks the same global order and keeps the same position.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "train/dataset.h"

namespace elm {

struct LoaderPosition {
  int64_t epoch = 0;
  int64_t index = 0;  // next sample within the epoch's order
};

struct BatchIds {
  int input_pad = 0;      // input id written for padding (ignored by the loss either way)
  int target_pad = -100;  // target id written for padding: the loss's ignore_index
};

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const SampleSet> samples, int batch_size, uint64_t seed, bool shuffle,
             BatchIds ids);

  // Fills inputs and targets [B, T] with the next B samples (wrapping into the next epoch).
  void Next(int* inputs, int* targets) { Next(inputs, targets, 0, 1); }
  // Data parallelism: consumes the next num_shards · B samples and fills inputs and targets with
  // the B of them at [shard · B, (shard + 1) · B). Ranks that call it with shards 0..n−1 see
  // disjoint rows of the same global batch and keep the same position.
  void Next(int* inputs, int* targets, int shard, int num_shards);
  // Batch k of the fixed (unshuffled) order; returns its row count (the last may be short).
  int Fixed(int64_t k, int* inputs, int* targets) const;
  int64_t num_fixed_batches() const;

  LoaderPosition position() const { return pos_; }
  void Seek(LoaderPosition p);
  int seq_len() const { return samples_->width() - 1; }
  int batch_size() const { return B_; }

 private:
  void Fill(int64_t sample, int* inputs, int* targets) const;
  void MakeOrder();

  std::shared_ptr<const SampleSet> samples_;
  int B_;
  uint64_t seed_;
  bool shuffle_;
  BatchIds ids_;
  LoaderPosition pos_;
  std::vector<int64_t> order_;  // of pos_.epoch
};

}  // namespace elm
