#include "model/session.h"

#include <algorithm>
#include <cstring>

#include "base/error.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "kernels/matmul_fast.h"
#include "kernels/rmsnorm.h"

namespace elm {

namespace {
template <typename T>
T* Grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}
}  // namespace

Session::Session(std::shared_ptr<const Model> model, int context, DType kv_type)
    : model_(std::move(model)),
      exact_(model_->exact()),
      cache_(model_->config(), context > 0 ? context : model_->config().max_context, kv_type),
      rope_(model_->config().head_dim, model_->config().rope_base, cache_.capacity()) {}

void Session::Norm(float* y, const float* x, const std::vector<float>& w, int64_t rows,
                   int64_t n) const {
  (reference_ ? RmsNorm : RmsNormRows)(y, x, w.data(), rows, n, model_->config().norm_eps);
}

void Session::Mul(float* y, const float* x, int64_t T, const MatRef& w) const {
  if (reference_)
    MatMul(y, x, T, w);
  else
    MatMulFast(y, x, T, w, exact_);
}

void Session::Forward(std::span<const int> tokens, std::vector<float>& logits,
                      const ForwardOptions& opt) {
  const ModelConfig& c = model_->config();
  const int T = static_cast<int>(tokens.size());
  const int64_t V = c.vocab_size;
  if (T == 0) Fail("forward: no tokens given");
  for (int t = 0; t < T; ++t)
    if (tokens[t] < 0 || tokens[t] >= c.vocab_size)
      Fail("token id ", tokens[t], " at position ", t, " is out of range [0, ", c.vocab_size, ")");
  const int past = cache_.size();
  if (!opt.branches.empty()) {
    int sum = 0, longest = 0;
    for (int n : opt.branches) {
      if (n <= 0) Fail("forward: a branch of ", n, " tokens");
      sum += n;
      longest = std::max(longest, n);
    }
    if (sum != T) Fail("forward: branches of ", sum, " tokens for ", T, " tokens");
    if (T > kMaxBatch || opt.hidden_states != nullptr)
      Fail("forward: branches need at most ", kMaxBatch, " tokens and no hidden states");
    if (past + longest > cache_.capacity())
      Fail(longest, " tokens after ", past, " in the cache exceed the context of ",
           cache_.capacity(), " tokens");
    ForwardBatch(tokens, logits, opt);
    return;
  }
  if (past + T > cache_.capacity())
    Fail(T, " tokens after ", past, " in the cache exceed the context of ", cache_.capacity(),
         " tokens");
  if (T <= kMaxBatch || opt.hidden_states != nullptr) {
    ForwardBatch(tokens, logits, opt);
    return;
  }
  // Long prompts run in batches of kMaxBatch positions (llama.cpp's ubatch), so scratch memory
  // stays bounded; the result differs from one batch by summation order only.
  std::vector<float> part;
  if (opt.all_logits) logits.resize(static_cast<size_t>(T) * V);
  for (int s = 0; s < T; s += kMaxBatch) {
    const int n = std::min(kMaxBatch, T - s);
    ForwardBatch(tokens.subspan(static_cast<size_t>(s), static_cast<size_t>(n)), part, opt);
    if (opt.all_logits)
      std::copy(part.begin(), part.end(), logits.begin() + static_cast<int64_t>(s) * V);
    else if (s + n == T)
      logits.swap(part);
  }
}

void Session::ForwardBatch(std::span<const int> tokens, std::vector<float>& logits,
                           const ForwardOptions& opt) {
  const ModelConfig& c = model_->config();
  const int T = static_cast<int>(tokens.size());
  const int64_t D = c.dim, V = c.vocab_size;
  const int past = cache_.size();

  Reserve(T);
  float* x = x_.data();  // [T, D] residual stream
  for (int t = 0; t < T; ++t) model_->embeddings().RowToF32(tokens[t], x + t * D);
  if (opt.hidden_states) {
    opt.hidden_states->assign(static_cast<size_t>(c.n_layers + 1) * T * D, 0.0f);
    std::copy(x, x + T * D, opt.hidden_states->begin());
  }
  const int* pos = nullptr;
  if (!opt.branches.empty()) {
    branch_pos_.resize(static_cast<size_t>(T));
    int max_kv_heads = 0;
    for (const auto& layer : c.layers) max_kv_heads = std::max(max_kv_heads, layer.n_kv_heads);
    Grow(branch_kv_, static_cast<size_t>(T) * 2 * max_kv_heads * c.head_dim);
    int t = 0;
    for (int n : opt.branches)
      for (int j = 0; j < n; ++j) branch_pos_[static_cast<size_t>(t++)] = past + j;
    pos = branch_pos_.data();
  }
  for (int l = 0; l < c.n_layers; ++l) {
    Layer(l, x, T, past, opt, pos);
    if (opt.hidden_states && l + 1 < c.n_layers)
      std::copy(x, x + T * D, opt.hidden_states->begin() + (l + 1) * T * D);
  }
  cache_.Advance(opt.branches.empty() ? T : opt.branches.back());

  // Final norm; logits for the rows asked for.
  const int first = opt.all_logits ? 0 : T - 1;
  const int rows = T - first;
  float* xn = h_.data();
  Norm(xn, x, model_->final_norm(), T, D);
  if (opt.hidden_states) std::copy(xn, xn + T * D, opt.hidden_states->begin() + c.n_layers * T * D);
  logits.resize(static_cast<size_t>(rows) * V);
  Mul(logits.data(), xn + first * D, rows, model_->lm_head());
}

void Session::BranchAttention(int l, float* att, const float* q, const float* kv_rows, int past,
                              std::span<const int> branches) {
  const ModelConfig& c = model_->config();
  const int H = c.layers[l].n_heads, Hkv = c.layers[l].n_kv_heads;
  const int64_t Dh = c.head_dim;
  int64_t t0 = 0;
  for (int n : branches) {
    for (int j = 0; j < n; ++j) {
      const float* kt = kv_rows + (t0 + j) * 2 * Hkv * Dh;
      for (int k = 0; k < Hkv; ++k) cache_.Store(l, k, past + j, kt + k * Dh, kt + (Hkv + k) * Dh);
    }
    (reference_ ? CausalAttention : CausalAttentionFast)(
        att + t0 * H * Dh, q + t0 * H * Dh, n, past, H, Hkv, static_cast<int>(Dh), cache_.Layer(l));
    t0 += n;
  }
}

size_t Session::WorkFloats(const ModelConfig& c, int T) {
  const auto rows = static_cast<size_t>(T), ffn_rows = static_cast<size_t>(std::min(T, kFfnRows));
  size_t attention = 0, ffn = 0;
  for (int l = 0; l < c.n_layers; ++l) {
    const auto qkv = static_cast<size_t>(c.qkv_out(l));
    const auto att = static_cast<size_t>(c.layers[l].n_heads) * c.head_dim;
    attention = std::max(attention, rows * (qkv + att));
    ffn = std::max(ffn, ffn_rows * c.layers[l].ffn_dim * (c.ffn_with_glu ? 2 : 1));
  }
  return std::max(attention, ffn);
}

void Session::Reserve(int T) {
  const ModelConfig& c = model_->config();
  Grow(x_, static_cast<size_t>(T) * c.dim);
  Grow(h_, static_cast<size_t>(T) * c.dim);
  Grow(work_, WorkFloats(c, T));
}

void Session::Layer(int l, float* x, int T, int past, const ForwardOptions& opt, const int* pos) {
  const ModelConfig& c = model_->config();
  const LayerWeights& w = model_->layer(l);
  const int64_t D = c.dim, Dh = c.head_dim;
  const int H = c.layers[l].n_heads, Hkv = c.layers[l].n_kv_heads;
  const int64_t F = c.layers[l].ffn_dim;
  const int64_t qkv_dim = c.qkv_out(l);

  // --- attention block (pre-norm) ---
  float* h = h_.data();
  Norm(h, x, w.attn_norm, T, D);
  float* qkv = work_.data();  // [T, (H + 2Hkv) Dh]
  Mul(qkv, h, T, w.qkv);
  // Per position: QK-norm, RoPE, keys and values into the cache (positions independent).
#pragma omp parallel for schedule(static) if (!reference_ && T >= 8)
  for (int t = 0; t < T; ++t) {
    float* qt = qkv + t * qkv_dim;  // heads [0, H) are queries
    float* kt = qt + H * Dh;        // then Hkv keys
    float* vt = kt + Hkv * Dh;      // then Hkv values
    if (c.qk_norm) {
      RmsNorm(qt, qt, w.q_norm.data(), H, Dh, c.norm_eps);
      RmsNorm(kt, kt, w.k_norm.data(), Hkv, Dh, c.norm_eps);
    }
    const int p = pos ? pos[t] : past + t;
    ApplyRope(qt, H, p, rope_);
    ApplyRope(kt, Hkv, p, rope_);
    if (pos) {  // branch runs: stored run by run (BranchAttention)
      std::memcpy(branch_kv_.data() + t * 2 * Hkv * Dh, kt, sizeof(float) * 2 * Hkv * Dh);
      continue;
    }
    for (int k = 0; k < Hkv; ++k) cache_.Store(l, k, p, kt + k * Dh, vt + k * Dh);
  }
  // Queries packed to [T, H, Dh] in place: row t moves down over rows already moved (in order).
  for (int t = 0; t < T; ++t)
    std::memmove(qkv + t * H * Dh, qkv + t * qkv_dim, sizeof(float) * H * Dh);
  float* att = qkv + T * qkv_dim;  // [T, H Dh]
  if (pos)
    BranchAttention(l, att, qkv, branch_kv_.data(), past, opt.branches);
  else
    (reference_ ? CausalAttention : CausalAttentionFast)(att, qkv, T, past, H, Hkv,
                                                         static_cast<int>(Dh), cache_.Layer(l));
  Mul(h, att, T, w.out);  // the normed input is spent: h holds the projection
  for (int64_t i = 0; i < T * D; ++i) x[i] += h[i];

  // --- FFN block (pre-norm), kFfnRows rows at a time: the [rows, F] intermediates are the
  // largest scratch of a prefill batch ---
  Norm(h, x, w.ffn_norm, T, D);
  for (int r0 = 0; r0 < T; r0 += kFfnRows) {
    const int n = std::min(kFfnRows, T - r0);
    float* hr = h + static_cast<int64_t>(r0) * D;
    float* g = work_.data();  // [n, F]
    Mul(g, hr, n, w.up);
    if (c.ffn_with_glu) {
      float* gate = g + n * F;
      Mul(gate, hr, n, w.gate);
      (reference_ ? SwiGlu : SwiGluFast)(g, gate, g, n * F);
    } else {
      (reference_ ? SiluInPlace : SiluInPlaceFast)(g, n * F);
    }
    Mul(hr, g, n, w.down);  // these normed rows are spent: they take the output
    float* xr = x + static_cast<int64_t>(r0) * D;
    for (int64_t i = 0; i < n * D; ++i) xr[i] += hr[i];
  }
}

}  // namespace elm
