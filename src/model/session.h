// Per-request inference state (llama2.c's RunState): the KV cache, the RoPE table and scratch
// buffers. Sessions share one read-only Model.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "kernels/rope.h"
#include "model/kv_cache.h"
#include "model/model.h"

namespace elm {

struct ForwardOptions {
  bool all_logits = false;  // [T, V] logits rather than only the last row
  // If set, receives [L + 1, T, D]: embeddings, the residual stream after each layer, and for
  // the last entry the final norm of the last layer's output (HF output_hidden_states).
  std::vector<float>* hidden_states = nullptr;
  // Branches (docs/evaluation.md, "Requests and scoring"): if not empty, the tokens are
  // consecutive runs of these lengths (summing to T), each continuing the cached prefix on its
  // own: a run's tokens take positions past, past + 1, ... and attend to the prefix and to the
  // earlier tokens of their own run only, as if each run were fed alone after Rewind(past). The
  // cache then holds the prefix and the last run. One forward reads the weights once for all
  // runs (lm-eval's choices of one question). T must be at most kMaxBatch; no hidden_states.
  std::span<const int> branches;
};

class Session {
 public:
  // context: the most positions this session can hold; 0 means the model's max_context_length.
  // kv_type: how the KV cache stores keys and values (f32, bf16 or f16; KVCache).
  explicit Session(std::shared_ptr<const Model> model, int context = 0,
                   DType kv_type = DType::kF32);

  const Model& model() const { return *model_; }
  const KVCache& cache() const { return cache_; }
  int position() const { return cache_.size(); }
  int context() const { return cache_.capacity(); }
  // Use the scalar reference kernels instead of the SIMD ones (the test oracle; slow).
  void set_reference(bool on) { reference_ = on; }
  // Every matrix product in f32 on widened weights, with the SIMD kernels (--exact); starts as
  // the model's LoadOptions::exact. The reference kernels are exact anyway.
  void set_exact(bool on) { exact_ = on; }
  bool exact() const { return exact_; }
  void Reset() { cache_.Clear(); }
  void Rewind(int n) { cache_.Truncate(n); }
  // Holds the first n of `stored` positions saved by KVCache::SavePrefix of a session of the same
  // model and KV type (a server's prefix store).
  void LoadPrefix(std::span<const uint8_t> kv, int stored, int n) {
    cache_.LoadPrefix(kv, stored, n);
  }

  // Positions processed together; longer inputs run in batches of this many (bounded scratch).
  static constexpr int kMaxBatch = 256;
  // Rows the FFN runs at a time within a batch (its [rows, ffn_dim] intermediates are the
  // largest scratch).
  static constexpr int kFfnRows = 128;

  // Runs `tokens` at positions [position(), position() + T), appending their keys and values to
  // the cache, and writes logits ([V], or [T, V] with all_logits). Throws elm::Error for ids out
  // of range or when the context would overflow (the cache is left unchanged then).
  void Forward(std::span<const int> tokens, std::vector<float>& logits,
               const ForwardOptions& opt = {});

  friend class BatchStep;  // model/batch_step.h: runs several sessions' rows in one pass

 private:
  void ForwardBatch(std::span<const int> tokens, std::vector<float>& logits,
                    const ForwardOptions& opt);
  // pos: each row's position (branches), or nullptr for past, past + 1, ...
  void Layer(int l, float* x, int T, int past, const ForwardOptions& opt, const int* pos);
  // Attention of branch runs: each run's keys and values go into the cache after the prefix in
  // turn, and its queries attend there (qkv rows hold the packed queries; kv_rows their keys
  // and values, [T, 2 Hkv Dh]).
  void BranchAttention(int l, float* att, const float* q, const float* kv_rows, int past,
                       std::span<const int> branches);
  // Grows the scratch once to what T positions need in the widest layer (not layer by layer,
  // which would leave the smaller buffers freed on the way resident).
  void Reserve(int T);
  // The work arena's floats for T positions: the widest layer's [T, qkv] projections and
  // [T, H·Dh] outputs, or its FFN intermediates for kFfnRows rows (Reserve; BatchStep's too).
  static size_t WorkFloats(const ModelConfig& c, int T);

  // RMSNorm of `rows` vectors of length n and the matrix product, by the reference or the fast
  // kernels (set_reference).
  void Norm(float* y, const float* x, const std::vector<float>& w, int64_t rows, int64_t n) const;
  void Mul(float* y, const float* x, int64_t T, const MatRef& w) const;

  std::shared_ptr<const Model> model_;
  bool reference_ = false;
  bool exact_ = false;
  KVCache cache_;
  RopeTable rope_;
  // Scratch (Reserve): the residual stream [T, D]; the normed input [T, D], which also takes
  // each block's output; and one arena for the attention block's [T, qkv] projections and [T, H·Dh]
  // outputs, then the FFN's [rows, F] intermediates, which are never live together.
  std::vector<float> x_, h_, work_;
  std::vector<float> branch_kv_;  // [T, 2 Hkv Dh] keys and values of branch runs (Layer)
  std::vector<int> branch_pos_;   // [T] positions of branch runs
};

}  // namespace elm
