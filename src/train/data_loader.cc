#include "train/data_loader.h"

#include <numeric>

#include "base/error.h"
#include "base/rng.h"

namespace elm {

DataLoader::DataLoader(std::shared_ptr<const SampleSet> samples, int batch_size, uint64_t seed,
                       bool shuffle, BatchIds ids)
    : samples_(std::move(samples)), B_(batch_size), seed_(seed), shuffle_(shuffle), ids_(ids) {
  ELM_CHECK(samples_ && samples_->size() > 0 && B_ > 0);
  MakeOrder();
}

void DataLoader::MakeOrder() {
  const int64_t n = samples_->size();
  order_.resize(static_cast<size_t>(n));
  std::iota(order_.begin(), order_.end(), int64_t{0});
  if (!shuffle_) return;
  uint64_t mix = seed_ ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(pos_.epoch + 1));
  Rng rng(SplitMix64(mix));
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(rng.NextU64() % static_cast<uint64_t>(i + 1));
    std::swap(order_[static_cast<size_t>(i)], order_[static_cast<size_t>(j)]);
  }
}

void DataLoader::Seek(LoaderPosition p) {
  if (p.epoch < 0 || p.index < 0 || p.index > samples_->size())
    Fail("data position (epoch ", p.epoch, ", index ", p.index, ") does not fit a dataset of ",
         samples_->size(), " samples: was the data or sequence_length changed?");
  const bool new_epoch = p.epoch != pos_.epoch;
  pos_ = p;
  if (new_epoch) MakeOrder();
}

void DataLoader::Fill(int64_t sample, int* inputs, int* targets) const {
  const int32_t* s = samples_->sample(sample);
  const int T = seq_len();
  for (int t = 0; t < T; ++t) {
    inputs[t] = s[t] == kPadToken ? ids_.input_pad : s[t];
    targets[t] = s[t + 1] == kPadToken ? ids_.target_pad : s[t + 1];
  }
}

void DataLoader::Next(int* inputs, int* targets, int shard, int num_shards) {
  ELM_CHECK(num_shards > 0 && shard >= 0 && shard < num_shards);
  const int T = seq_len();
  const int first = shard * B_;
  for (int i = 0; i < num_shards * B_; ++i) {
    if (pos_.index >= samples_->size()) {
      ++pos_.epoch;
      pos_.index = 0;
      MakeOrder();
    }
    const int64_t sample = order_[static_cast<size_t>(pos_.index++)];
    const int b = i - first;
    if (b >= 0 && b < B_)
      Fill(sample, inputs + static_cast<int64_t>(b) * T, targets + static_cast<int64_t>(b) * T);
  }
}

int64_t DataLoader::num_fixed_batches() const {
  return (samples_->size() + B_ - 1) / B_;
}

int DataLoader::Fixed(int64_t k, int* inputs, int* targets) const {
  const int T = seq_len();
  const int64_t begin = k * B_;
  const int rows = static_cast<int>(std::min<int64_t>(B_, samples_->size() - begin));
  for (int b = 0; b < rows; ++b)
    Fill(begin + b, inputs + static_cast<int64_t>(b) * T, targets + static_cast<int64_t>(b) * T);
  return rows;
}

}  // namespace elm
