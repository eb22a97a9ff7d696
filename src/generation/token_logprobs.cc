#include "generation/token_logprobs.h"

#include <algorithm>

#include "kernels/log_softmax.h"

namespace elm {

namespace {

// Indices of the `top` largest entries, best first, by insertion into a short list (a strict
// comparison keeps the lower index on ties).
std::vector<int> BestIndices(std::span<const float> row, int top) {
  std::vector<int> best;
  for (int i = 0; i < static_cast<int>(row.size()) && top > 0; ++i) {
    const float x = row[i];
    if (static_cast<int>(best.size()) == top && !(x > row[best.back()])) continue;
    auto pos = std::find_if(best.begin(), best.end(), [&](int b) { return x > row[b]; });
    best.insert(pos, i);
    if (static_cast<int>(best.size()) > top) best.pop_back();
  }
  return best;
}

}  // namespace

TokenLogprob LogprobOf(std::span<const float> row, int id, int top) {
  const RowLogSoftmax lsm(row);
  // The same expression for the chosen token and the alternatives, so a greedy token's logprob
  // equals the top entry exactly (lm-evaluation-harness compares them with ==).
  auto logprob = [&](int i) { return static_cast<float>(lsm.LogProb(row[i])); };
  TokenLogprob t;
  t.id = id;
  t.logprob = logprob(id);
  for (int b : BestIndices(row, top)) t.top.emplace_back(b, logprob(b));
  return t;
}

}  // namespace elm
