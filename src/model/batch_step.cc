#include "model/batch_step.h"

#include <algorithm>
#include <cstring>

#include "base/error.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/matmul_fast.h"
#include "kernels/rmsnorm.h"

namespace elm {

namespace {
template <typename T>
T* GrowBatchScratch(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}
}  // namespace

void BatchStep::Mul(float* y, const float* x, int64_t rows, const MatRef& w) const {
  MatMulFast(y, x, rows, w, exact_);
}

void BatchStep::Reserve(int rows) {
  const ModelConfig& c = model_->config();
  GrowBatchScratch(x_, static_cast<size_t>(rows) * c.dim);
  GrowBatchScratch(h_, static_cast<size_t>(rows) * c.dim);
  GrowBatchScratch(work_, Session::WorkFloats(c, rows));
}

void BatchStep::Forward(std::span<const BatchItem> items) {
  const ModelConfig& c = model_->config();
  const int64_t D = c.dim, V = c.vocab_size;
  if (items.empty()) return;
  // Check everything before any cache changes.
  int rows = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const BatchItem& it = items[i];
    if (it.session == nullptr || &it.session->model() != model_.get())
      Fail("batch step: item ", i, " has no session on this step's model");
    if (it.session->reference_) Fail("batch step: item ", i, " is in reference mode");
    for (size_t j = 0; j < i; ++j)
      if (items[j].session == it.session)
        Fail("batch step: items ", j, " and ", i, " share a session");
    if (it.tokens.empty()) Fail("batch step: item ", i, " has no tokens");
    for (size_t t = 0; t < it.tokens.size(); ++t)
      if (it.tokens[t] < 0 || it.tokens[t] >= c.vocab_size)
        Fail("token id ", it.tokens[t], " at position ", t, " is out of range [0, ", c.vocab_size,
             ")");
    const int T = static_cast<int>(it.tokens.size());
    if (it.logits && (it.logit_rows < 1 || it.logit_rows > T))
      Fail("batch step: item ", i, " wants ", it.logit_rows, " logit rows of ", T);
    int longest = T;
    if (!it.branches.empty()) {
      int sum = 0;
      longest = 0;
      for (int n : it.branches) {
        if (n <= 0) Fail("batch step: item ", i, " has a branch of ", n, " tokens");
        sum += n;
        longest = std::max(longest, n);
      }
      if (sum != T) Fail("batch step: item ", i, " has branches of ", sum, " tokens for ", T);
    }
    if (it.session->position() + longest > it.session->context())
      Fail(longest, " tokens after ", it.session->position(),
           " in the cache exceed the context of ", it.session->context(), " tokens");
    rows += T;
  }
  exact_ = items[0].session->exact();

  Reserve(rows);
  row_item_.resize(rows);
  row_pos_.resize(rows);
  first_row_.resize(items.size());
  float* x = x_.data();
  for (int i = 0, r = 0; i < static_cast<int>(items.size()); ++i) {
    first_row_[i] = r;
    const int past = items[i].session->position();
    // A branch item's rows restart at the cached prefix's end with every run.
    int run = 0, in_run = 0;
    for (size_t t = 0; t < items[i].tokens.size(); ++t, ++r) {
      row_item_[r] = i;
      if (items[i].branches.empty()) {
        row_pos_[r] = past + static_cast<int>(t);
      } else {
        if (in_run == items[i].branches[run]) {
          ++run;
          in_run = 0;
        }
        row_pos_[r] = past + in_run++;
      }
      model_->embeddings().RowToF32(items[i].tokens[t], x + r * D);
    }
  }
  int max_kv_heads = 0;
  for (const auto& layer : c.layers) max_kv_heads = std::max(max_kv_heads, layer.n_kv_heads);
  for (const BatchItem& it : items)
    if (!it.branches.empty()) {
      GrowBatchScratch(branch_kv_, static_cast<size_t>(rows) * 2 * max_kv_heads * c.head_dim);
      break;
    }
  for (int l = 0; l < c.n_layers; ++l) Layer(l, items, rows);
  for (const BatchItem& it : items)
    it.session->cache_.Advance(it.branches.empty() ? static_cast<int>(it.tokens.size())
                                                   : it.branches.back());

  // Final norm and logits for the trailing logit_rows of each item that wants them, as one
  // product.
  int wanted = 0;
  for (const BatchItem& it : items)
    if (it.logits) wanted += it.logit_rows;
  GrowBatchScratch(last_, static_cast<size_t>(wanted) * D);
  wanted = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!items[i].logits) continue;
    const int end = first_row_[i] + static_cast<int>(items[i].tokens.size());
    std::copy(x + (end - items[i].logit_rows) * D, x + end * D, last_.begin() + wanted * D);
    wanted += items[i].logit_rows;
  }
  if (wanted == 0) return;
  float* xn = h_.data();
  RmsNormRows(xn, last_.data(), model_->final_norm().data(), wanted, D, c.norm_eps);
  std::vector<float>& all = work_;  // [wanted, V] fits? grow it
  GrowBatchScratch(all, static_cast<size_t>(wanted) * V);
  Mul(all.data(), xn, wanted, model_->lm_head());
  for (size_t i = 0, k = 0; i < items.size(); ++i) {
    if (!items[i].logits) continue;
    const auto n = static_cast<size_t>(items[i].logit_rows);
    items[i].logits->assign(all.begin() + static_cast<int64_t>(k) * V,
                            all.begin() + static_cast<int64_t>(k + n) * V);
    k += n;
  }
}

void BatchStep::Layer(int l, std::span<const BatchItem> items, int rows) {
  const ModelConfig& c = model_->config();
  const LayerWeights& w = model_->layer(l);
  const int64_t D = c.dim, Dh = c.head_dim;
  const int H = c.layers[l].n_heads, Hkv = c.layers[l].n_kv_heads;
  const int64_t F = c.layers[l].ffn_dim;
  const int64_t qkv_dim = c.qkv_out(l);
  const int R = rows;
  float* x = x_.data();

  // --- attention block (pre-norm) ---
  float* h = h_.data();
  RmsNormRows(h, x, w.attn_norm.data(), R, D, c.norm_eps);
  float* qkv = work_.data();  // [R, (H + 2Hkv) Dh]
  Mul(qkv, h, R, w.qkv);
#pragma omp parallel for schedule(static) if (R >= 8)
  for (int r = 0; r < R; ++r) {
    Session& s = *items[row_item_[r]].session;
    float* qt = qkv + r * qkv_dim;
    float* kt = qt + H * Dh;
    float* vt = kt + Hkv * Dh;
    if (c.qk_norm) {
      RmsNorm(qt, qt, w.q_norm.data(), H, Dh, c.norm_eps);
      RmsNorm(kt, kt, w.k_norm.data(), Hkv, Dh, c.norm_eps);
    }
    const int pos = row_pos_[r];
    ApplyRope(qt, H, pos, s.rope_);
    ApplyRope(kt, Hkv, pos, s.rope_);
    if (!items[row_item_[r]].branches.empty()) {  // stored run by run (Session::BranchAttention)
      std::memcpy(branch_kv_.data() + r * 2 * Hkv * Dh, kt, sizeof(float) * 2 * Hkv * Dh);
      continue;
    }
    for (int k = 0; k < Hkv; ++k) s.cache_.Store(l, k, pos, kt + k * Dh, vt + k * Dh);
  }
  for (int r = 0; r < R; ++r)
    std::memmove(qkv + r * H * Dh, qkv + r * qkv_dim, sizeof(float) * H * Dh);
  float* att = qkv + R * qkv_dim;  // [R, H Dh]
  for (size_t i = 0; i < items.size(); ++i) {
    const int r0 = first_row_[i];
    const int T = static_cast<int>(items[i].tokens.size());
    Session& s = *items[i].session;
    if (!items[i].branches.empty()) {
      s.BranchAttention(l, att + r0 * H * Dh, qkv + r0 * H * Dh,
                        branch_kv_.data() + r0 * 2 * Hkv * Dh, s.position(), items[i].branches);
      continue;
    }
    CausalAttentionFast(att + r0 * H * Dh, qkv + r0 * H * Dh, T, s.position(), H, Hkv,
                        static_cast<int>(Dh), s.cache_.Layer(l));
  }
  Mul(h, att, R, w.out);
  for (int64_t i = 0; i < R * D; ++i) x[i] += h[i];

  // --- FFN block (pre-norm), Session::kFfnRows rows at a time ---
  RmsNormRows(h, x, w.ffn_norm.data(), R, D, c.norm_eps);
  for (int r0 = 0; r0 < R; r0 += Session::kFfnRows) {
    const int n = std::min(Session::kFfnRows, R - r0);
    float* hr = h + static_cast<int64_t>(r0) * D;
    float* g = work_.data();  // [n, F]
    Mul(g, hr, n, w.up);
    if (c.ffn_with_glu) {
      float* gate = g + n * F;
      Mul(gate, hr, n, w.gate);
      SwiGluFast(g, gate, g, n * F);
    } else {
      SiluInPlaceFast(g, n * F);
    }
    Mul(hr, g, n, w.down);
    float* xr = x + static_cast<int64_t>(r0) * D;
    for (int64_t i = 0; i < n * D; ++i) xr[i] += hr[i];
  }
}

}  // namespace elm
