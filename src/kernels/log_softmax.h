// Log-softmax of one row of logits, with the maximum and the sum of exponentials in double: the
// one normalizer behind reported logprobs (server, generation), evaluation scores and the KL
// divergence of `elm kld`.
#pragma once

#include <cmath>
#include <cstddef>
#include <span>

namespace elm {

class RowLogSoftmax {
 public:
  // `row` must be non-empty.
  explicit RowLogSoftmax(std::span<const float> row) {
    for (size_t i = 1; i < row.size(); ++i)
      if (row[i] > row[argmax_]) argmax_ = i;
    max_ = row[argmax_];
    double sum = 0;
    for (float x : row) sum += std::exp(static_cast<double>(x) - max_);
    log_sum_ = std::log(sum);
    log_z_ = max_ + log_sum_;
  }

  // log softmax(row)_i for a logit x of the row: x - log Σ exp(row).
  double LogProb(float x) const { return x - log_z_; }
  // The same value computed as (x - max) - log Σ exp(row - max): one rounding fewer, the form the
  // evaluation scores have always used.
  double ShiftedLogProb(float x) const { return (x - max_) - log_sum_; }
  // First index of the maximum, as torch.argmax / np.argmax.
  size_t argmax() const { return argmax_; }

 private:
  size_t argmax_ = 0;
  double max_ = 0;
  double log_sum_ = 0;  // log Σ exp(row - max)
  double log_z_ = 0;    // max + log_sum
};

}  // namespace elm
