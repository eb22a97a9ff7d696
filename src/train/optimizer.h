// AdamW with decoupled weight decay (torch.optim.AdamW, single-tensor path), global-norm gradient
// clipping (torch.nn.utils.clip_grad_norm_) and CoreNet's learning-rate schedules (docs/openelm.md
// §6.3). The exact formulas are in docs/training.md ("Model, loss and optimizer"). Each walks a
// TrainSlab (train/slab.h), so full-parameter and LoRA training share them.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "train/slab.h"

namespace elm {

struct AdamWParams {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;  // applied to tensors with SlabTensor::decay
};

// torch.linalg.vector_norm(x, 2) of an f32 tensor as PyTorch's CPU kernel computes it (the AVX2
// path of ATen's norm_two_reduce_step): 8 lane-wise f32 sums of x², the lanes added in order, the
// tail added one by one, sqrt in f32. Reproduces PyTorch's value bit for bit.
float TorchVectorNorm(const float* x, size_t n);
// The global gradient norm exactly as torch.nn.utils.clip_grad_norm_ computes it: the f32 norm of
// each tensor, then the norm of those norms stacked in slab.norm_order(). (A float64 sum
// differs by ~1e-5 relative on 4M-element embeddings: f32 accumulation drops the smallest
// squares. Following PyTorch keeps the clip coefficient, and the trajectory, on the reference.)
double GlobalGradNorm(const TrainSlab& slab);
// clip_grad_norm_: coef = max_norm / (norm + 1e-6) in f32; gradients are scaled by coef when
// coef < 1. Returns the coefficient applied (1 when nothing was clipped).
// Sharded, only elements [begin, end) are scaled (each rank its own).
double ClipGradients(TrainSlab& slab, double norm, double max_norm, size_t begin = 0,
                     size_t end = SIZE_MAX);

// One AdamW update of every parameter with the current gradients. `step` is 1-based (bias
// correction), `lr` this step's learning rate; weight decay on tensors with SlabTensor::decay.
// For each element, in f32 as PyTorch does:
//   p ← p·(1 − lr·wd);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
//   p ← p − (lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + eps)
// Only the tensors the moments hold are updated (slab.moments_begin: with sharded moments a rank
// updates its own range, train/sharding.h).
void AdamWUpdate(TrainSlab& slab, const AdamWParams& hp, double lr, int64_t step);

// The scalars of one AdamW step, formed in double and rounded once to f32 (PyTorch passes Python
// floats to f32 tensor ops), and the per-element update above.
struct AdamWStep {
  AdamWStep(const AdamWParams& hp, double lr, int64_t step);
  float b1, b2, omb1, omb2, step_size, bc2_sqrt, eps, decay;
  void Update(float& p, float g, float& m, float& v, bool weight_decay) const {
    if (weight_decay) p *= decay;
    m = m * b1 + omb1 * g;
    v = v * b2 + omb2 * (g * g);
    const float denom = std::sqrt(v) / bc2_sqrt + eps;
    p -= step_size * (m / denom);
  }
};

// CoreNet schedulers: "cosine" (linear warm-up from warmup_init_lr, then cosine from max_lr to
// min_lr over period = max_iterations − warmup_iterations + 1) and "fixed" (warm-up, then max_lr).
struct LrSchedule {
  std::string name = "cosine";
  int64_t max_iterations = 1;
  int64_t warmup_iterations = 0;
  double warmup_init_lr = 1e-7;
  double max_lr = 1e-3;
  double min_lr = 1e-4;

  // Learning rate of optimizer step `it` (0-based), never negative.
  double At(int64_t it) const;
};

}  // namespace elm
