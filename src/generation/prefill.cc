#include "generation/prefill.h"

#include <algorithm>

namespace elm {

namespace {

// Prompt chunk sizes. Scoring needs logits for every row ([T, V] floats), so it goes 64 positions
// at a time to bound that buffer (8 MB at V = 32000); plain prefill only keeps the last row, and
// its chunks are whole batches of the session's own, so chunking does not change the numbers.
constexpr int kScoreChunk = 64;
constexpr int kPrefillChunk = 512;
static_assert(kPrefillChunk % Session::kMaxBatch == 0);

bool Cancelled(const CancelPredicate& cancelled) {
  return cancelled && cancelled();
}

}  // namespace

bool Prefill(Session& session, std::span<const int> prompt, const CancelPredicate& cancelled,
             std::vector<float>& logits, const ForwardFn& forward) {
  const int n = static_cast<int>(prompt.size());
  for (int start = 0; start < n; start += kPrefillChunk) {
    if (Cancelled(cancelled)) return false;
    const auto chunk = prompt.subspan(start, std::min(kPrefillChunk, n - start));
    if (forward)
      forward(session, chunk, logits);
    else
      session.Forward(chunk, logits);
  }
  return true;
}

bool ScorePrompt(Session& session, std::span<const int> prompt, int top,
                 const CancelPredicate& cancelled, std::vector<float>& logits,
                 std::vector<TokenLogprob>& scores) {
  const int n = static_cast<int>(prompt.size());
  const size_t V = static_cast<size_t>(session.model().config().vocab_size);
  std::vector<float> rows;
  ForwardOptions all_rows;
  all_rows.all_logits = true;
  for (int start = 0; start < n; start += kScoreChunk) {
    if (Cancelled(cancelled)) return false;
    const int T = std::min(kScoreChunk, n - start);
    session.Forward(prompt.subspan(start, T), rows, all_rows);
    for (int t = 0; t < T && start + t + 1 < n; ++t)
      scores.push_back(
          LogprobOf(std::span<const float>(rows).subspan(t * V, V), prompt[start + t + 1], top));
    if (start + T == n) logits.assign(rows.end() - static_cast<std::ptrdiff_t>(V), rows.end());
  }
  return true;
}

}  // namespace elm
