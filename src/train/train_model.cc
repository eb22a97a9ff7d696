#include "train/train_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/error.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/cross_entropy.h"
#include "kernels/rmsnorm.h"
#include "train/qlora_base.h"

namespace elm {

namespace {
// Room for n floats (contents unspecified: for outputs that are overwritten).
void Grow(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}
// n zeros (for outputs that are accumulated into).
void Fill0(std::vector<float>& v, size_t n) {
  Grow(v, n);
  std::fill(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(n), 0.0f);
}
}  // namespace

TrainModel::TrainModel(ModelConfig cfg)
    : params_(std::move(cfg)), rope_(params_.config().head_dim, params_.config().rope_base, 1) {}

void TrainModel::Allocate(int B, int T) {
  const ModelConfig& c = config();
  const size_t N = static_cast<size_t>(B) * T, D = c.dim, Dh = c.head_dim;
  rope_.Reserve(T);
  if (B == B_ && T == T_ && !acts_.empty()) return;
  B_ = B, T_ = T;
  acts_.assign(c.n_layers, LayerActs{});
  work_ = LayerActs{};
  work_layer_ = -1;
  if (ckpt_) ckpt_out_.resize(N * D);
  for (int l = 0; l < c.n_layers; ++l) {
    acts_[l].x.resize(N * D);
    // With checkpointing the shared set is sized for the widest layer.
    LayerActs& a = ckpt_ ? work_ : acts_[l];
    const size_t H = c.layers[l].n_heads, C3 = c.qkv_out(l), F = c.layers[l].ffn_dim;
    const auto Fit = [](std::vector<float>& v, size_t n) {
      if (v.size() < n) v.resize(n);
    };
    Fit(a.h1, N * D);
    if (c.qk_norm) Fit(a.qkv_raw, N * C3);
    Fit(a.qkv, N * C3);
    Fit(a.lse, static_cast<size_t>(B) * H * T);
    Fit(a.att, N * H * Dh);
    Fit(a.xmid, N * D);
    Fit(a.h2, N * D);
    Fit(a.u, N * c.proj1_out(l));
    Fit(a.g, N * F);
  }
  x_final_.resize(N * D);
  xf_.resize(N * D);
  logits_.resize(N * static_cast<size_t>(c.vocab_size));
  lse_ce_.resize(N);
}

LossValue TrainModel::Forward(const int* inputs, const int* targets, int B, int T,
                              const LossOptions& opt) {
  const ModelConfig& c = config();
  if (B <= 0 || T <= 0) Fail("train forward: empty batch");
  const int64_t N = static_cast<int64_t>(B) * T, D = c.dim, V = c.vocab_size;
  for (int64_t i = 0; i < N; ++i)
    if (inputs[i] < 0 || inputs[i] >= V)
      Fail("input token id ", inputs[i], " at batch position ", i,
           " is outside the vocabulary [0, ", V, ")");
  Allocate(B, T);
  inputs_.assign(inputs, inputs + N);
  targets_.assign(targets, targets + N);
  loss_opt_ = opt;
  const ModelSlots w = params_.Slots(params_.params.data());

  float* x0 = acts_.empty() ? x_final_.data() : acts_[0].x.data();
  Gather(-1);
  for (int64_t i = 0; i < N; ++i)
    std::memcpy(x0 + i * D, w.embeddings + static_cast<int64_t>(inputs[i]) * D, sizeof(float) * D);
  lora_p_ = lora_on() && lora_dropout_on_ ? static_cast<float>(lora_->settings().dropout) : 0.0f;
  lora_ran_ = lora_on();
  if (lora_ran_) {
    if (lora_acts_.size() != static_cast<size_t>(c.n_layers)) lora_acts_.assign(c.n_layers, {});
    const float* A = lora_->Slot(lora_->params.data(), -1, LoraTarget::kEmbeddings, true);
    const float* Bm = lora_->Slot(lora_->params.data(), -1, LoraTarget::kEmbeddings, false);
    if (A != nullptr) {  // x0[i] += s·A[:, id]ᵀ·Bᵀ (PEFT: no dropout on the embedding branch)
      const int64_t r = lora_->settings().rank;
      const float s = lora_->settings().scaling();
      lora_emb_ts_.resize(static_cast<size_t>(N * r));
      for (int64_t i = 0; i < N; ++i)
        for (int64_t k = 0; k < r; ++k) lora_emb_ts_[i * r + k] = s * A[k * V + inputs[i]];
      Grow(lora_tmp_, static_cast<size_t>(N * D));
      gemm_.Forward(lora_tmp_.data(), lora_emb_ts_.data(), Bm, N, r, D);
      for (int64_t i = 0; i < N * D; ++i) x0[i] += lora_tmp_[i];
    }
  }
  Release(-1);
  for (int l = 0; l < c.n_layers; ++l) {
    Gather(l);
    LayerForward(l, w.layers[l], acts_[l].x.data(),
                 l + 1 < c.n_layers ? acts_[l + 1].x.data() : x_final_.data());
    Release(l);
  }

  // The output's parameters stay gathered for Backward (released after the final norm's).
  Gather(-1);
  RmsNorm(xf_.data(), x_final_.data(), w.norm, N, D, c.norm_eps);
  gemm_.Forward(logits_.data(), xf_.data(), w.lm_head, N, D, V);
  const CrossEntropyStats s =
      CrossEntropyForward(lse_ce_.data(), logits_.data(), targets, N, V, opt.ignore_index);
  LossValue r;
  r.n_valid = s.n_valid;
  if (s.n_valid > 0) {
    r.ce = s.ce_sum / static_cast<double>(s.n_valid);
    r.mean_lse_sq = s.lse_sq_sum / static_cast<double>(s.n_valid);
  }
  r.loss = r.ce + static_cast<double>(opt.z_loss_coef) * r.mean_lse_sq;
  last_ = r;
  return r;
}

void TrainModel::set_activation_checkpointing(bool on) {
  if (on == ckpt_) return;
  ckpt_ = on;
  B_ = T_ = 0;  // the next Forward lays the saved tensors out again
  acts_.clear();
  work_ = LayerActs{};
  work_layer_ = -1;
  ckpt_out_ = {};
  lora_work_ = {};
}

int64_t TrainModel::ActivationBytes() const {
  const auto bytes = [](const std::vector<float>& v) {
    return static_cast<int64_t>(v.size() * sizeof(float));
  };
  const auto layer = [&](const LayerActs& a) {
    return bytes(a.x) + bytes(a.h1) + bytes(a.qkv_raw) + bytes(a.qkv) + bytes(a.lse) +
           bytes(a.att) + bytes(a.xmid) + bytes(a.h2) + bytes(a.u) + bytes(a.g);
  };
  const auto lora = [&](const LoraActs& la) {
    int64_t n = 0;
    for (size_t k = 0; k < la.xd.size(); ++k)
      n += bytes(la.xd[k]) + bytes(la.ts[k]) + bytes(la.n[k]) + bytes(la.z[k]);
    return n;
  };
  int64_t n = layer(work_) + bytes(ckpt_out_) + bytes(x_final_) + bytes(xf_) + bytes(logits_) +
              bytes(lse_ce_) + bytes(lora_emb_ts_) + lora(lora_work_);
  for (const LayerActs& a : acts_) n += layer(a);
  for (const LoraActs& la : lora_acts_) n += lora(la);
  return n;
}

void TrainModel::LayerForward(int l, const LayerSlots& w, const float* x, float* x_out) {
  const ModelConfig& c = config();
  LayerActs& a = Acts(l);
  work_layer_ = l;
  const int64_t N = static_cast<int64_t>(B_) * T_, D = c.dim, Dh = c.head_dim;
  const int H = c.layers[l].n_heads, Hkv = c.layers[l].n_kv_heads;
  const int64_t C3 = c.qkv_out(l), F = c.layers[l].ffn_dim, P1 = c.proj1_out(l);

  // --- attention block (pre-norm) ---
  RmsNorm(a.h1.data(), x, w.attn_norm, N, D, c.norm_eps);
  float* qkv_proj = c.qk_norm ? a.qkv_raw.data() : a.qkv.data();
  gemm_.Forward(qkv_proj, a.h1.data(), w.qkv, N, D, C3);
  if (lora_ran_) LoraForward(l, LoraTarget::kQkv, a.h1.data(), qkv_proj, D, C3, w.qkv);
#pragma omp parallel for schedule(static) if (N * C3 >= (1 << 16))
  for (int64_t n = 0; n < N; ++n) {
    float* q = a.qkv.data() + n * C3;  // heads [0, H) queries, then Hkv keys, then values
    float* k = q + H * Dh;
    if (c.qk_norm) {
      const float* raw = qkv_proj + n * C3;
      RmsNorm(q, raw, w.q_norm, H, Dh, c.norm_eps);
      RmsNorm(k, raw + H * Dh, w.k_norm, Hkv, Dh, c.norm_eps);
      std::memcpy(k + Hkv * Dh, raw + (H + Hkv) * Dh, sizeof(float) * Hkv * Dh);
    }
    const int pos = static_cast<int>(n % T_);
    ApplyRope(q, H, pos, rope_);
    ApplyRope(k, Hkv, pos, rope_);
  }
  AttentionForward(a.att.data(), a.lse.data(), a.qkv.data(), B_, T_, H, Hkv, static_cast<int>(Dh));
  gemm_.Forward(a.xmid.data(), a.att.data(), w.out, N, H * Dh, D);
  if (lora_ran_) LoraForward(l, LoraTarget::kOut, a.att.data(), a.xmid.data(), H * Dh, D, w.out);
  for (int64_t i = 0; i < N * D; ++i) a.xmid[i] += x[i];

  // --- FFN block (pre-norm) ---
  RmsNorm(a.h2.data(), a.xmid.data(), w.ffn_norm, N, D, c.norm_eps);
  gemm_.Forward(a.u.data(), a.h2.data(), w.proj1, N, D, P1);
  if (lora_ran_) LoraForward(l, LoraTarget::kProj1, a.h2.data(), a.u.data(), D, P1, w.proj1);
  if (c.ffn_with_glu) {
    for (int64_t n = 0; n < N; ++n) {
      const float* u = a.u.data() + n * P1;  // first half gate, second half up
      SwiGlu(a.g.data() + n * F, u, u + F, F);
    }
  } else {
    std::copy(a.u.begin(), a.u.end(), a.g.begin());
    SiluInPlace(a.g.data(), N * F);
  }
  gemm_.Forward(x_out, a.g.data(), w.proj2, N, F, D);
  if (lora_ran_) LoraForward(l, LoraTarget::kProj2, a.g.data(), x_out, F, D, w.proj2);
  for (int64_t i = 0; i < N * D; ++i) x_out[i] += a.xmid[i];
}

void TrainModel::Backward(float loss_scale) {
  const ModelConfig& c = config();
  ELM_CHECK(B_ > 0 && (lora_ || !params_.grads.empty()));
  const int64_t N = static_cast<int64_t>(B_) * T_, V = c.vocab_size;
  if (last_.n_valid == 0) return HooksWithoutBackward();  // every target ignored: no gradient

  const auto n_valid = static_cast<float>(last_.n_valid);
  float* dlogits = logits_.data();  // the logits buffer becomes its own gradient
  CrossEntropyBackward(dlogits, logits_.data(), lse_ce_.data(), targets_.data(), N, V,
                       loss_opt_.ignore_index, loss_scale / n_valid,
                       loss_scale * loss_opt_.z_loss_coef / n_valid);
  BackwardFromLogits();
}

void TrainModel::TargetLogProbs(float* out) const {
  ELM_CHECK(B_ > 0);
  const int64_t N = static_cast<int64_t>(B_) * T_;
  elm::TargetLogProbs(out, logits_.data(), lse_ce_.data(), targets_.data(), N, config().vocab_size,
                      loss_opt_.ignore_index);
}

ModelSlots TrainModel::GradSlots() {
  const ModelConfig& c = config();
  if (!lora_) return params_.Slots(params_.grads.data());
  // Frozen base: no weight gradients (null: TrainGemm skips the product); the norms' go to a
  // scratch buffer that is never read.
  ModelSlots g;
  norm_sink_.resize(static_cast<size_t>(std::max<int64_t>(c.dim, c.head_dim)));
  float* sink = norm_sink_.data();
  g.norm = sink;
  g.layers.resize(c.n_layers);
  for (LayerSlots& ls : g.layers) {
    ls.attn_norm = ls.ffn_norm = sink;
    if (c.qk_norm) ls.q_norm = ls.k_norm = sink;
  }
  return g;
}

void TrainModel::BackwardRows(const float* token_scale) {
  const ModelConfig& c = config();
  ELM_CHECK(B_ > 0 && (lora_ || !params_.grads.empty()));
  const int64_t N = static_cast<int64_t>(B_) * T_, V = c.vocab_size;
  if (last_.n_valid == 0) return HooksWithoutBackward();
  CrossEntropyBackwardRows(logits_.data(), logits_.data(), lse_ce_.data(), targets_.data(),
                           token_scale, N, V, loss_opt_.ignore_index);
  BackwardFromLogits();
}

// Another rank's micro-batch may have targets: the parameter hooks (collective gathers under
// full_shard) run as a backward pass would run them.
void TrainModel::HooksWithoutBackward() {
  if (!gather_ && !release_) return;
  Release(-1);
  for (int l = config().n_layers - 1; l >= 0; --l) {
    Gather(l);
    Release(l);
  }
  if (lora_ran_) Gather(-1);
}

void TrainModel::BackwardFromLogits() {
  const ModelConfig& c = config();
  const int64_t N = static_cast<int64_t>(B_) * T_, D = c.dim, V = c.vocab_size;
  const ModelSlots w = params_.Slots(params_.params.data());
  const ModelSlots g = GradSlots();
  float* dlogits = logits_.data();
  Fill0(dh_, N * D);
  gemm_.Backward(dh_.data(), g.lm_head, dlogits, xf_.data(), w.lm_head, N, D, V);
  Fill0(dx_, N * D);  // ∂L/∂(residual stream), carried down through the layers
  RmsNormBackward(dx_.data(), g.norm, dh_.data(), x_final_.data(), w.norm, N, D, c.norm_eps);
  Release(-1);
  for (int l = c.n_layers - 1; l >= 0; --l) {
    Gather(l);
    // Checkpointing: the layer's forward again from its saved input (the last layer's is still
    // in the shared set after Forward).
    if (ckpt_ && work_layer_ != l)
      LayerForward(l, w.layers[l], acts_[l].x.data(), ckpt_out_.data());
    LayerBackward(l, w.layers[l], g.layers[l], dx_.data());
    Release(l);
    if (after_layer_backward_) after_layer_backward_(l);
  }
  // Embedding lookup: rows in order, so the sum for a repeated token is deterministic.
  if (g.embeddings != nullptr)
    for (int64_t i = 0; i < N; ++i) {
      float* row = g.embeddings + static_cast<int64_t>(inputs_[i]) * D;
      const float* d = dx_.data() + i * D;
      for (int64_t j = 0; j < D; ++j) row[j] += d[j];
    }
  if (lora_ran_) {
    Gather(-1);  // the embedding adapter's B (stays gathered until the next release)
    const float* Bm = lora_->Slot(lora_->params.data(), -1, LoraTarget::kEmbeddings, false);
    if (Bm != nullptr) {
      float* dA = lora_->Slot(lora_->grads.data(), -1, LoraTarget::kEmbeddings, true);
      float* dB = lora_->Slot(lora_->grads.data(), -1, LoraTarget::kEmbeddings, false);
      const int64_t r = lora_->settings().rank;
      const float s = lora_->settings().scaling();
      Fill0(lora_dt_, static_cast<size_t>(N * r));
      gemm_.Backward(lora_dt_.data(), dB, dx_.data(), lora_emb_ts_.data(), Bm, N, r, D);
      for (int64_t i = 0; i < N; ++i)  // rows in order: deterministic for repeated tokens
        for (int64_t k = 0; k < r; ++k) dA[k * V + inputs_[i]] += s * lora_dt_[i * r + k];
    }
  }
}

void TrainModel::EnableLora(const LoraSettings& s) {
  if (s.rank <= 0) Fail("LoRA: the rank must be positive, got ", s.rank);
  if (!(s.dropout >= 0 && s.dropout < 1))
    Fail("LoRA: the dropout must be in [0, 1), got ", s.dropout);
  lora_ = std::make_unique<LoraParams>(config(), s);
  lora_->AllocateTrainingState();
  lora_acts_.assign(config().n_layers, {});
}

void TrainModel::DoraNorm(int l, LoraTarget t, const float* W, int64_t in, int64_t out,
                          float* n) const {
  const float* A = lora_->Slot(lora_->params.data(), l, t, true);
  const float* Bm = lora_->Slot(lora_->params.data(), l, t, false);
  const int64_t r = lora_->settings().rank;
  const float s = lora_->settings().scaling();
  // QDoRA: a base held quantized (train/qlora_base.h) is read a row at a time, dequantized into a
  // per-thread row, PEFT's dequantize_module_weight without an f32 copy of the matrix (the norm
  // is then the one of DoRA on the dequantized base, bit for bit).
  const QuantizedMatrix* qw = FindQuantizedWeight(W);
#pragma omp parallel if (out * in * r >= (1 << 18))
  {
    std::vector<float> row(qw != nullptr ? static_cast<size_t>(in) : 0);
#pragma omp for schedule(static)
    for (int64_t o = 0; o < out; ++o) {
      const float* w = W + o * in;
      if (qw != nullptr) {
        DequantizeRows(*qw, o, 1, row.data());
        w = row.data();
      }
      double sum = 0;
      for (int64_t i = 0; i < in; ++i) {
        float ba = 0;
        for (int64_t k = 0; k < r; ++k) ba += Bm[o * r + k] * A[k * in + i];
        const float v = w[i] + s * ba;
        sum += static_cast<double>(v) * v;
      }
      n[o] = static_cast<float>(std::sqrt(sum));
    }
  }
}

void TrainModel::InitDoraMagnitudes() {
  ELM_CHECK(lora_ != nullptr);
  const ModelConfig& c = config();
  const ModelSlots w = params_.Slots(params_.params.data());
  for (int l = 0; l < c.n_layers; ++l) {
    const int64_t D = c.dim, HD = static_cast<int64_t>(c.layers[l].n_heads) * c.head_dim;
    const struct {
      LoraTarget t;
      const float* W;
      int64_t in, out;
    } mats[] = {{LoraTarget::kQkv, w.layers[l].qkv, D, c.qkv_out(l)},
                {LoraTarget::kOut, w.layers[l].out, HD, D},
                {LoraTarget::kProj1, w.layers[l].proj1, D, c.proj1_out(l)},
                {LoraTarget::kProj2, w.layers[l].proj2, c.layers[l].ffn_dim, D}};
    for (const auto& m : mats) {
      const LoraTensor* tm = lora_->layout().Magnitude(l, m.t);
      if (tm != nullptr) DoraNorm(l, m.t, m.W, m.in, m.out, lora_->params.data() + tm->offset);
    }
  }
}

void TrainModel::LoraForward(int l, LoraTarget t, const float* x, float* y, int64_t in, int64_t out,
                             const float* W) {
  const float* A = lora_->Slot(lora_->params.data(), l, t, true);
  if (A == nullptr) return;
  const float* Bm = lora_->Slot(lora_->params.data(), l, t, false);
  const int64_t N = static_cast<int64_t>(B_) * T_, r = lora_->settings().rank;
  const float s = lora_->settings().scaling();
  LoraActs& la = LoraActsOf(l);
  const auto k = static_cast<size_t>(t) - 1;
  const float* xin = x;
  if (lora_p_ > 0) {
    std::vector<float>& xd = la.xd[k];
    xd.resize(static_cast<size_t>(N * in));
    for (int64_t i = 0; i < N * in; ++i)
      xd[i] = x[i] * LoraDropoutScale(lora_dropout_key_, l, t, static_cast<uint64_t>(i), lora_p_);
    xin = xd.data();
  }
  std::vector<float>& ts = la.ts[k];
  ts.resize(static_cast<size_t>(N * r));
  gemm_.Forward(ts.data(), xin, A, N, in, r);
  for (float& v : ts) v *= s;
  Grow(lora_tmp_, static_cast<size_t>(N * out));
  gemm_.Forward(lora_tmp_.data(), ts.data(), Bm, N, r, out);
  const LoraTensor* tm = lora_->layout().Magnitude(l, t);
  if (tm == nullptr) {
    for (int64_t i = 0; i < N * out; ++i) y[i] += lora_tmp_[i];
    return;
  }
  // DoRA (PEFT 0.9 Linear.forward + _apply_dora): y = x·Wᵀ + (m/n − 1)⊙(x'·Wᵀ) + (m/n)⊙lora,
  // with n = ‖W + s·B·A‖ detached; z = x'·Wᵀ + lora is kept for the magnitude's gradient.
  const float* m = lora_->params.data() + tm->offset;
  std::vector<float>& n = la.n[k];
  n.resize(static_cast<size_t>(out));
  DoraNorm(l, t, W, in, out, n.data());
  std::vector<float>& z = la.z[k];
  z.resize(static_cast<size_t>(N * out));
  if (lora_p_ > 0)
    gemm_.Forward(z.data(), xin, W, N, in, out);  // x'·Wᵀ with the dropped-out input
  else
    std::copy(y, y + N * out, z.begin());  // y holds x·Wᵀ
  for (int64_t i = 0; i < N; ++i)
    for (int64_t o = 0; o < out; ++o) {
      const float g = m[o] / n[o];
      const int64_t j = i * out + o;
      y[j] += (g - 1.0f) * z[j] + g * lora_tmp_[j];
      z[j] += lora_tmp_[j];
    }
}

void TrainModel::LoraBackward(int l, LoraTarget t, const float* dy, const float* x, float* dx,
                              int64_t in, int64_t out, const float* W) {
  const float* A = lora_->Slot(lora_->params.data(), l, t, true);
  if (A == nullptr) return;
  const float* Bm = lora_->Slot(lora_->params.data(), l, t, false);
  float* dA = lora_->Slot(lora_->grads.data(), l, t, true);
  float* dB = lora_->Slot(lora_->grads.data(), l, t, false);
  const int64_t N = static_cast<int64_t>(B_) * T_, r = lora_->settings().rank;
  const float s = lora_->settings().scaling();
  const LoraActs& la = LoraActsOf(l);
  const auto k = static_cast<size_t>(t) - 1;
  const LoraTensor* tm = lora_->layout().Magnitude(l, t);
  const float* dyl = dy;  // the LoRA branch's output gradient
  if (tm != nullptr) {
    // DoRA with n constant: ∂L/∂m_o = Σ dy_o·z_o/n_o; the LoRA branch sees dy⊙(m/n); the
    // correction term (m/n − 1)⊙(x'·Wᵀ) sends dy⊙(m/n − 1)·W to x'.
    const float* m = lora_->params.data() + tm->offset;
    float* dm = lora_->grads.data() + tm->offset;
    const float* n = la.n[k].data();
    const float* z = la.z[k].data();
    Grow(dora_dyl_, static_cast<size_t>(N * out));
    Grow(dora_dcorr_, static_cast<size_t>(N * out));
    for (int64_t o = 0; o < out; ++o) {
      double acc = 0;
      for (int64_t i = 0; i < N; ++i) acc += static_cast<double>(dy[i * out + o]) * z[i * out + o];
      dm[o] += static_cast<float>(acc / n[o]);
    }
    for (int64_t i = 0; i < N; ++i)
      for (int64_t o = 0; o < out; ++o) {
        const float g = m[o] / n[o];
        dora_dyl_[i * out + o] = g * dy[i * out + o];
        dora_dcorr_[i * out + o] = (g - 1.0f) * dy[i * out + o];
      }
    dyl = dora_dyl_.data();
  }
  // y += ts·Bᵀ with ts = s·xd·Aᵀ: dB += dyᵀ·ts, dts = dy·B, dA += s·dtsᵀ·xd, dxd = s·dts·A.
  Fill0(lora_dt_, static_cast<size_t>(N * r));
  gemm_.Backward(lora_dt_.data(), dB, dyl, la.ts[k].data(), Bm, N, r, out);
  for (int64_t i = 0; i < N * r; ++i) lora_dt_[i] *= s;
  if (lora_p_ > 0) {
    Fill0(lora_dx_, static_cast<size_t>(N * in));
    gemm_.Backward(lora_dx_.data(), dA, lora_dt_.data(), la.xd[k].data(), A, N, in, r);
    if (tm != nullptr)
      gemm_.Backward(lora_dx_.data(), nullptr, dora_dcorr_.data(), la.xd[k].data(), W, N, in, out);
    for (int64_t i = 0; i < N * in; ++i)
      dx[i] += lora_dx_[i] *
               LoraDropoutScale(lora_dropout_key_, l, t, static_cast<uint64_t>(i), lora_p_);
  } else {
    gemm_.Backward(dx, dA, lora_dt_.data(), x, A, N, in, r);
    if (tm != nullptr) gemm_.Backward(dx, nullptr, dora_dcorr_.data(), x, W, N, in, out);
  }
}

void TrainModel::LayerBackward(int l, const LayerSlots& w, const LayerSlots& g, float* dx) {
  const ModelConfig& c = config();
  LayerActs& a = Acts(l);
  const int64_t N = static_cast<int64_t>(B_) * T_, D = c.dim, Dh = c.head_dim;
  const int H = c.layers[l].n_heads, Hkv = c.layers[l].n_kv_heads;
  const int64_t C3 = c.qkv_out(l), F = c.layers[l].ffn_dim, P1 = c.proj1_out(l);

  // --- FFN block: x_out = xmid + proj_2(act(proj_1(ffn_norm(xmid)))) ---
  Fill0(dg_, N * F);
  gemm_.Backward(dg_.data(), g.proj2, dx, a.g.data(), w.proj2, N, F, D);
  if (lora_ran_) LoraBackward(l, LoraTarget::kProj2, dx, a.g.data(), dg_.data(), F, D, w.proj2);
  Fill0(du_, N * P1);
  if (c.ffn_with_glu) {
    for (int64_t n = 0; n < N; ++n) {
      const float* u = a.u.data() + n * P1;
      float* du = du_.data() + n * P1;
      SwiGluBackward(du, du + F, dg_.data() + n * F, u, u + F, F);
    }
  } else {
    SiluBackward(du_.data(), dg_.data(), a.u.data(), N * F);
  }
  Fill0(dh_, N * D);
  gemm_.Backward(dh_.data(), g.proj1, du_.data(), a.h2.data(), w.proj1, N, D, P1);
  if (lora_ran_)
    LoraBackward(l, LoraTarget::kProj1, du_.data(), a.h2.data(), dh_.data(), D, P1, w.proj1);
  RmsNormBackward(dx, g.ffn_norm, dh_.data(), a.xmid.data(), w.ffn_norm, N, D, c.norm_eps);

  // --- attention block: xmid = x + out_proj(attention(rope(qk_norm(qkv_proj(attn_norm(x)))))) ---
  Fill0(datt_, N * H * Dh);
  gemm_.Backward(datt_.data(), g.out, dx, a.att.data(), w.out, N, H * Dh, D);
  if (lora_ran_)
    LoraBackward(l, LoraTarget::kOut, dx, a.att.data(), datt_.data(), H * Dh, D, w.out);
  Fill0(dqkv_, N * C3);
  AttentionBackward(dqkv_.data(), datt_.data(), a.att.data(), a.lse.data(), a.qkv.data(), B_, T_, H,
                    Hkv, static_cast<int>(Dh));
  for (int64_t n = 0; n < N; ++n) {
    const int pos = static_cast<int>(n % T_);
    RopeBackward(dqkv_.data() + n * C3, H + Hkv, pos, rope_);  // queries and keys are adjacent
  }
  float* dproj = dqkv_.data();
  if (c.qk_norm) {
    Fill0(dqkv_raw_, N * C3);
    for (int64_t n = 0; n < N; ++n) {
      const float* dy = dqkv_.data() + n * C3;
      const float* raw = a.qkv_raw.data() + n * C3;
      float* dr = dqkv_raw_.data() + n * C3;
      RmsNormBackward(dr, g.q_norm, dy, raw, w.q_norm, H, Dh, c.norm_eps);
      RmsNormBackward(dr + H * Dh, g.k_norm, dy + H * Dh, raw + H * Dh, w.k_norm, Hkv, Dh,
                      c.norm_eps);
      std::memcpy(dr + (H + Hkv) * Dh, dy + (H + Hkv) * Dh, sizeof(float) * Hkv * Dh);
    }
    dproj = dqkv_raw_.data();
  }
  Fill0(dh_, N * D);
  gemm_.Backward(dh_.data(), g.qkv, dproj, a.h1.data(), w.qkv, N, D, C3);
  if (lora_ran_) LoraBackward(l, LoraTarget::kQkv, dproj, a.h1.data(), dh_.data(), D, C3, w.qkv);
  RmsNormBackward(dx, g.attn_norm, dh_.data(), acts_[l].x.data(), w.attn_norm, N, D, c.norm_eps);
}

double TrainModel::FlopsPerToken(int T) const {
  const ModelConfig& c = config();
  double matmul_params = static_cast<double>(c.vocab_size) * c.dim;  // the output projection
  double attn = 0;
  for (int l = 0; l < c.n_layers; ++l) {
    matmul_params += static_cast<double>(c.LayerParams(l));
    // scores and weighted values, causal: ~T/2 keys per query, 2 matmuls, ×3 for fwd+bwd
    attn += 6.0 * c.layers[l].n_heads * c.head_dim * T;
  }
  if (lora_) {
    // Frozen base: forward and input gradient only (4 FLOPs per weight), plus the adapter's
    // 6 per parameter.
    return 4.0 * matmul_params + 6.0 * static_cast<double>(lora_->size()) + attn;
  }
  return 6.0 * matmul_params + attn;
}

}  // namespace elm
