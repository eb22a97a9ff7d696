// The training forward and backward passes of OpenELM over a batch [B, T] (llm.c's six verbs:
// build, forward, zero_grad, backward, update — the update lives in train/optimizer.h).
// The forward pass computes exactly what Session::Forward computes (docs/openelm.md §1.1), but over
// B rows at once, through BLAS, saving every activation the backward pass needs.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "kernels/rope.h"
#include "train/lora.h"
#include "train/params.h"
#include "train/train_gemm.h"

namespace elm {

struct LossOptions {
  int ignore_index = -100;   // targets equal to this are skipped (CoreNet: the pad id, 32000)
  float z_loss_coef = 0.0f;  // CoreNet's z_loss_eps (1e-4) when use_z_loss, else 0
};

struct LossValue {
  double loss = 0;         // ce + z_loss_coef · mean_lse_sq
  double ce = 0;           // mean cross-entropy over non-ignored targets
  double mean_lse_sq = 0;  // mean logsumexp² over non-ignored targets
  int64_t n_valid = 0;     // non-ignored targets
};

class TrainModel {
 public:
  explicit TrainModel(ModelConfig cfg);

  const ModelConfig& config() const { return params_.config(); }
  ParamSet& params() { return params_; }
  const ParamSet& params() const { return params_; }

  // inputs, targets: [B, T] token ids; every row runs at positions 0..T-1 with a causal mask.
  // Saves the activations for Backward. Throws elm::Error for ids out of range.
  LossValue Forward(const int* inputs, const int* targets, int B, int T, const LossOptions& opt);
  // Logits [B, T, V] of the last Forward (overwritten by Backward).
  const float* logits() const { return logits_.data(); }
  // Accumulates ∂(loss_scale · loss)/∂params of the last Forward into trainable().grads.
  void Backward(float loss_scale = 1.0f);
  // Per-position log-probability of the target under the last Forward, [B·T] (0 where the target
  // is ignored): the terms of a sequence log-prob (DPO's π). Call before Backward.
  void TargetLogProbs(float* out) const;
  // Backward of a loss of those log-probs: accumulates ∂L/∂params where
  // ∂L/∂logp[n] = −token_scale[n] (token_scale[n] weighs position n's cross-entropy), instead of
  // the mean cross-entropy Backward uses. Preference losses (train/preference_loss.h) use it.
  void BackwardRows(const float* token_scale);
  void ZeroGrad() { trainable().ZeroGrad(); }
  // Called after each layer's backward (layers run last first) with the layer's index: its
  // gradients are final for this pass (data parallelism starts reducing them, train/sharding.h).
  void set_after_layer_backward(std::function<void(int)> f) {
    after_layer_backward_ = std::move(f);
  }
  // Parameter residency (full_shard, train/sharding.h): `gather(l)` runs before the trainable
  // parameters of decoder layer l are read and `release(l)` once they are not needed until the
  // next gather, l = -1 for the tensors outside the layers (embeddings, final norm, output).
  // Forward gathers -1 for the embedding lookup and releases it, gathers and releases each layer
  // in turn, then gathers -1 for the output; Backward releases -1 after the final norm, gathers
  // and releases each layer again (last first, around the recomputation with checkpointing).
  // The calls depend only on the model and the batch shape, so every rank makes the same calls
  // in the same order (the gathers are collective).
  void set_param_hooks(std::function<void(int)> gather, std::function<void(int)> release) {
    gather_ = std::move(gather);
    release_ = std::move(release);
  }
  // What the optimizer updates: the LoRA adapter when enabled, else every parameter.
  TrainSlab& trainable() { return lora_ ? static_cast<TrainSlab&>(*lora_) : params_; }
  // bf16 matrix products with f32 accumulation (common.mixed_precision); f32 by default.
  void set_mixed_precision(bool bf16) { gemm_.set_bf16(bf16); }

  // LoRA fine-tuning (docs/openelm.md §6.10): every targeted linear computes x·Wᵀ +
  // s·(drop(x)·Aᵀ)·Bᵀ, the token embedding (when targeted) adds s·(A[:, id])ᵀ·Bᵀ; params() become
  // the frozen base (no gradients: Backward fills lora()->grads only, and params().grads need not
  // be allocated). The adapter starts at zero (the caller runs lora()->Init or loads one).
  void EnableLora(const LoraSettings& s);
  LoraParams* lora() { return lora_.get(); }
  // Switches the adapter off (the base model alone, for a LoRA run's preference reference) or
  // back on for the following Forward calls. A Backward after a Forward with the adapter off
  // leaves the adapter's gradients untouched.
  void set_lora_enabled(bool on) { lora_enabled_ = on; }
  // DoRA: sets every magnitude vector to ‖W + s·B·A‖ per output row (PEFT's dora_init; with B = 0
  // that is ‖W‖), so training starts at the base model. Call after the base and A, B are set.
  void InitDoraMagnitudes();
  const LoraParams* lora() const { return lora_.get(); }
  // Dropout of the LoRA branch for the following Forward calls: on with the mask of `key`
  // (LoraDropoutKey), or off (evaluation). Off by default.
  void set_lora_dropout(bool on, uint64_t key = 0) {
    lora_dropout_on_ = on;
    lora_dropout_key_ = key;
  }

  // Activation checkpointing per decoder layer (CoreNet's model.activation_checkpointing, TRL's
  // gradient_checkpointing; docs/training.md "Activation checkpointing"): Forward keeps only each
  // layer's input and Backward recomputes the layer's forward before its backward. The
  // recomputation repeats the same arithmetic on the same inputs, so the gradients are
  // bit-identical to running without it. Takes effect from the next Forward.
  void set_activation_checkpointing(bool on);
  bool activation_checkpointing() const { return ckpt_; }
  // Bytes of the activations the last Forward holds for Backward (the layers' saved tensors, the
  // final norm, logits and the LoRA branches' saved tensors), for the memory report.
  int64_t ActivationBytes() const;

  // FLOPs of one forward+backward per token at sequence length T (6·N matmul rule plus the
  // attention scores; with LoRA 4·N for the frozen base plus 6 per adapter parameter), for MFU.
  double FlopsPerToken(int T) const;

 private:
  struct LayerActs {
    std::vector<float> x;        // [N, D] residual stream entering the layer
    std::vector<float> h1;       // [N, D] attn_norm(x)
    std::vector<float> qkv_raw;  // [N, C3] qkv_proj output (pre QK-norm; only with QK-norm)
    std::vector<float> qkv;      // [N, C3] queries/keys normed and rotated, values as projected
    std::vector<float> lse;      // [B, H, T] attention logsumexp
    std::vector<float> att;      // [N, H Dh] attention output
    std::vector<float> xmid;     // [N, D] residual after the attention block
    std::vector<float> h2;       // [N, D] ffn_norm(xmid)
    std::vector<float> u;        // [N, 2F] proj_1 output (gate | up)
    std::vector<float> g;        // [N, F] silu(gate)·up
  };
  void Allocate(int B, int T);
  // Layer l's saved tensors: its own, or with checkpointing the one set every layer shares
  // (x stays per layer: acts_[l].x is always layer l's input).
  LayerActs& Acts(int l) { return ckpt_ ? work_ : acts_[l]; }
  // The backward pass from ∂L/∂logits (already in logits_) down to the embeddings.
  void BackwardFromLogits();
  // A backward pass with nothing to compute: only the parameter hooks, in the same order.
  void HooksWithoutBackward();
  // Where the backward pass writes: the gradient slab, or for LoRA null base weights and a sink
  // for the frozen norms.
  ModelSlots GradSlots();
  bool lora_on() const { return lora_ && lora_enabled_; }
  void LayerForward(int l, const LayerSlots& w, const float* x_in, float* x_out);
  void LayerBackward(int l, const LayerSlots& w, const LayerSlots& g, float* dx);
  // y[N, out] += the LoRA branch of (layer l, target t) for input x[N, in]; saves what
  // LoraBackward needs. No-op when (l, t) is not targeted.
  // W [out, in] is the frozen base matrix (DoRA needs it; y holds x·Wᵀ on entry).
  void LoraForward(int l, LoraTarget t, const float* x, float* y, int64_t in, int64_t out,
                   const float* W);
  // dx[N, in] += its input gradient for output gradient dy; accumulates the A and B gradients
  // (and DoRA's magnitude gradient).
  void LoraBackward(int l, LoraTarget t, const float* dy, const float* x, float* dx, int64_t in,
                    int64_t out, const float* W);
  // DoRA's n = ‖W + s·B·A‖ per output row of (layer l, target t) into n[out].
  void DoraNorm(int l, LoraTarget t, const float* W, int64_t in, int64_t out, float* n) const;

  ParamSet params_;
  RopeTable rope_;
  TrainGemm gemm_;
  int B_ = 0, T_ = 0;
  LossOptions loss_opt_;
  LossValue last_;
  std::vector<int> inputs_, targets_;  // [N]
  std::vector<LayerActs> acts_;
  bool ckpt_ = false;
  LayerActs work_;               // with checkpointing: the tensors of layer work_layer_
  int work_layer_ = -1;          // the layer whose forward work_ holds (−1: none)
  std::vector<float> ckpt_out_;  // [N, D] the discarded output of a recomputed layer
  std::vector<float> x_final_;   // [N, D] residual after the last layer
  std::vector<float> xf_;        // [N, D] final norm output
  std::vector<float> logits_;    // [N, V] (its gradient after Backward)
  std::vector<float> lse_ce_;    // [N]
  // Backward scratch, sized for the widest layer.
  std::vector<float> dx_, dh_, dqkv_, dqkv_raw_, datt_, du_, dg_, tmp_;

  // LoRA state: per layer and linear target (qkv, out, proj_1, proj_2) the dropped input (only
  // with dropout) and s·drop(x)·Aᵀ [N, r]; the embedding branch's s·A[:, id] rows.
  // DoRA adds per target the detached norm n [out] and z = x'·Wᵀ + s·(x'·Aᵀ)·Bᵀ [N, out].
  struct LoraActs {
    std::array<std::vector<float>, 4> xd, ts, n, z;
  };
  std::unique_ptr<LoraParams> lora_;
  bool lora_enabled_ = true;
  bool lora_ran_ = false;  // the last Forward applied the adapter
  bool lora_dropout_on_ = false;
  uint64_t lora_dropout_key_ = 0;
  float lora_p_ = 0;  // the dropout probability the last Forward applied
  std::vector<LoraActs> lora_acts_;
  LoraActs lora_work_;  // with checkpointing: the one set every layer shares
  LoraActs& LoraActsOf(int l) { return ckpt_ ? lora_work_ : lora_acts_[l]; }
  std::vector<float> lora_emb_ts_, lora_tmp_, lora_dt_, lora_dx_, dora_dyl_, dora_dcorr_;
  std::function<void(int)> after_layer_backward_;
  std::function<void(int)> gather_, release_;
  void Gather(int layer) {
    if (gather_) gather_(layer);
  }
  void Release(int layer) {
    if (release_) release_(layer);
  }
  std::vector<float> norm_sink_;  // receives the (discarded) gradients of the frozen norms
};

}  // namespace elm
