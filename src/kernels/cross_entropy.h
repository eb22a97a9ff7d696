// Cross-entropy over the vocabulary with CoreNet's optional z-loss (docs/openelm.md §6.5;
// apple/corenet loss_fn/language_modeling/cross_entropy.py):
//   ce = mean over non-ignored rows of (logsumexp(logits) − logits[target])
//   z  = z_coef · mean over non-ignored rows of logsumexp(logits)²          (z_coef = 1e-4)
// Rows whose target equals ignore_index contribute nothing to either term and get zero gradient.
// (CoreNet multiplies ignored rows' logits by 0 instead of dropping them, which adds the constant
// z_coef·ln(V)² per ignored row to its *logged* z-loss; elm leaves that constant out. The
// gradients are the same.)
#pragma once

#include <cstdint>

namespace elm {

struct CrossEntropyStats {
  double ce_sum = 0;      // Σ over non-ignored rows of −log p(target)
  double lse_sq_sum = 0;  // Σ over non-ignored rows of logsumexp²
  int64_t n_valid = 0;    // rows whose target is not ignore_index
};

// logits: [N, V]; targets: [N]; lse (out): [N] logsumexp of each row (0 for ignored rows).
// Throws elm::Error for a target outside [0, V) that is not ignore_index.
CrossEntropyStats CrossEntropyForward(float* lse, const float* logits, const int* targets,
                                      int64_t N, int64_t V, int ignore_index);

// Writes (does not accumulate) ∂L/∂logits for L = ce_scale·Σ ce_row + z_scale·Σ lse_row² over the
// non-ignored rows: dlogits = ce_scale·(softmax − onehot) + 2·z_scale·lse·softmax. dlogits may
// alias logits: the training step reuses the logits buffer for its gradient (llm.c).
void CrossEntropyBackward(float* dlogits, const float* logits, const float* lse, const int* targets,
                          int64_t N, int64_t V, int ignore_index, float ce_scale, float z_scale);

// Per-token log-probabilities of the last CrossEntropyForward: logp[i] = logits[i, target] − lse[i]
// (−ce of the row), 0 for ignored rows. Sequence log-probs (DPO's π) are sums of these.
void TargetLogProbs(float* logp, const float* logits, const float* lse, const int* targets,
                    int64_t N, int64_t V, int ignore_index);
// Writes ∂L/∂logits for L = Σ over non-ignored rows of scale[i]·ce_i (a per-row weight instead of
// CrossEntropyBackward's one ce_scale; no z-loss): dlogits = scale[i]·(softmax − onehot). With
// scale[i] = −∂L/∂logp_i this is the backward of any loss of the TargetLogProbs. May alias logits.
void CrossEntropyBackwardRows(float* dlogits, const float* logits, const float* lse,
                              const int* targets, const float* scale, int64_t N, int64_t V,
                              int ignore_index);

}  // namespace elm
