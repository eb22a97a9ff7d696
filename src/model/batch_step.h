// One forward pass over several sessions at once (continuous batching, docs/server.md): each
// sequence brings its own Session (KV cache, position) and a few tokens — one for a decoding
// stream, a chunk for a prompt being prefilled — and the weight matrix products run as one
// [rows, D] x W product over all of them, so each step reads the weights once instead of once per
// sequence. Attention runs per sequence against its own cache. The matrix kernels pick a decode or
// a prefill variant by the number of rows (kernels/matmul_fast.cc), so a sequence's logits agree
// with its own Session::Forward within docs/numerics.md's tolerance for chunked prefill, and bit
// for bit when it runs alone (tests/batch_step_test.cc).
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "model/session.h"

namespace elm {

struct BatchItem {
  Session* session = nullptr;
  std::span<const int> tokens;           // non-empty; run at [position, position + size)
  std::vector<float>* logits = nullptr;  // receives the last row's [V] logits; null: none wanted
  // How many trailing rows' logits `logits` receives, as [logit_rows, V] in row order (1..size;
  // lm-eval's scored continuation rows, docs/evaluation.md "Batching across documents").
  int logit_rows = 1;
  // Branches, as ForwardOptions::branches: if not empty, the tokens are consecutive runs of these
  // lengths (summing to tokens.size()), each continuing the session's cache on its own; the
  // cache then holds the prefix and the last run.
  std::span<const int> branches = {};
};

class BatchStep {
 public:
  explicit BatchStep(std::shared_ptr<const Model> model) : model_(std::move(model)) {}

  // Runs every item as Session::Forward would, appending to each session's cache. Sessions must
  // be distinct, on this step's model and not in reference mode. Throws elm::Error (no cache
  // changed) for ids out of range, a context overflow, a session on another model, logit_rows
  // outside [1, size] or branches that do not sum to the item's tokens.
  void Forward(std::span<const BatchItem> items);

 private:
  void Layer(int l, std::span<const BatchItem> items, int rows);
  void Reserve(int rows);
  void Mul(float* y, const float* x, int64_t rows, const MatRef& w) const;

  std::shared_ptr<const Model> model_;
  bool exact_ = false;
  // Per row: the item it belongs to and its position; per item: its first row.
  std::vector<int> row_item_, row_pos_, first_row_;
  std::vector<float> x_, h_, work_, last_;
  std::vector<float> branch_kv_;  // [rows, 2 Hkv Dh] keys and values of branch items' rows
};

}  // namespace elm
