// How much a weight conversion (e.g. F32 → Q8_0) changes a model's predictions, the way
// llama.cpp's perplexity --kl-divergence reports it: mean KL(base ‖ converted) per token, top-1
// agreement, and the perplexity of both on the same tokens.
#pragma once

#include <memory>
#include <span>

#include "model/model.h"

namespace elm {

struct QuantQuality {
  int tokens = 0;      // scored positions
  double mean_kl = 0;  // nats per token
  double max_kl = 0;
  double top1_agreement = 0;  // fraction of positions with the same argmax
  double base_ppl = 0, converted_ppl = 0;
  double max_abs_diff = 0;   // largest |logit difference| over every scored position and token
  double max_abs_logit = 0;  // largest |base logit|, for scale
};

// Scores `tokens` in consecutive windows of `context` positions with both models.
QuantQuality CompareModels(const std::shared_ptr<const Model>& base,
                           const std::shared_ptr<const Model>& converted,
                           std::span<const int> tokens, int context);

}  // namespace elm
