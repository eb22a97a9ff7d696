// The model's own distribution at one position (log-softmax of the raw logits, before penalties,
// bias or truncation), as OpenAI's logprobs report it: the chosen token and the best alternatives.
#pragma once

#include <span>
#include <utility>
#include <vector>

namespace elm {

struct TokenLogprob {
  int id = 0;
  float logprob = 0.0f;
  std::vector<std::pair<int, float>> top;  // best first
};

// The logprob of `id` under the log-softmax of `row`, with the `top` (>= 0) best alternatives.
// Ties keep the lower id, like the samplers' greedy choice.
TokenLogprob LogprobOf(std::span<const float> row, int id, int top);

}  // namespace elm
