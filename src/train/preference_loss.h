// Preference losses of TRL's DPOTrainer (v0.8.2 `dpo_loss`, `get_batch_logps`,
// `get_batch_loss_metrics`; the math in shared/conformance/posttrain/README.md §2), with their
// backward beside them. For N pairs with policy log-probs π_c, π_r and reference log-probs ρ_c,
// ρ_r (sums over the answer tokens; per-token averages for IPO):
//   h_i = (π_c,i − π_r,i) − (ρ_c,i − ρ_r,i)
//   sigmoid: L_i = −(1−ε)·log σ(βh_i) − ε·log σ(−βh_i)      (DPO; ε = label smoothing, cDPO)
//   hinge:   L_i = max(0, 1 − βh_i)                          (RSO / SLiC)
//   ipo:     L_i = (h_i − 1/(2β))²
//   loss = mean_i L_i
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace elm {

class TrainModel;

enum class PreferenceLossType { kSigmoid, kHinge, kIpo };

// "sigmoid", "hinge" or "ipo" (TRL's loss_type); throws naming `key` and listing them otherwise.
PreferenceLossType ParsePreferenceLossType(const std::string& name, const std::string& key);
const char* PreferenceLossName(PreferenceLossType t);

struct PreferenceLossOptions {
  PreferenceLossType type = PreferenceLossType::kSigmoid;
  double beta = 0.1;
  double label_smoothing = 0;  // sigmoid only (TRL ignores it for hinge and ipo)
  // IPO scores the per-token average log-prob (TRL ≥ 0.7.11), the others the sum.
  bool average_log_probs() const { return type == PreferenceLossType::kIpo; }
};

// TRL's logged metrics for one batch (means over the pairs; log-probs as the loss uses them).
struct PreferenceMetrics {
  double rewards_chosen = 0;      // β·(π_c − ρ_c)
  double rewards_rejected = 0;    // β·(π_r − ρ_r)
  double rewards_accuracies = 0;  // fraction with reward_c > reward_r (strict)
  double rewards_margins = 0;     // reward_c − reward_r
  double logps_chosen = 0;        // π_c
  double logps_rejected = 0;      // π_r
  // The mean policy logit over the positions that predict a scored (answer) token, all V entries,
  // of the chosen rows and of the rejected rows (TRL's logits/chosen, logits/rejected average
  // over every position of the padded rows instead: docs/training.md). Set by
  // PreferenceForwardBackward only (0 from ComputePreferenceLoss).
  double logits_chosen = 0, logits_rejected = 0;
};

struct PreferenceLoss {
  double loss = 0;
  std::vector<double> h, losses;                         // per pair
  std::vector<double> chosen_rewards, rejected_rewards;  // per pair
  std::vector<double> dloss_dchosen, dloss_drejected;    // ∂loss/∂π_c,i and ∂loss/∂π_r,i
  PreferenceMetrics metrics;
};

// The loss, its gradient with respect to the policy log-probs and the metrics. All spans hold N.
PreferenceLoss ComputePreferenceLoss(std::span<const double> policy_chosen,
                                     std::span<const double> policy_rejected,
                                     std::span<const double> ref_chosen,
                                     std::span<const double> ref_rejected,
                                     const PreferenceLossOptions& opt);

// Sequence log-probs of the rows of a batch from TrainModel::TargetLogProbs: per row, the sum of
// the scored positions (targets ≠ ignore), or their mean when `average`. [B·T] → [B].
std::vector<double> SequenceLogProbs(std::span<const float> token_logps, const int* targets, int B,
                                     int T, bool average, int ignore = -100);

// Runs `model` forward over a concatenated batch (rows 0..N−1 chosen, N..2N−1 rejected; inputs
// and targets [2N, T], data/chat_dataset.h MakePreferenceBatch) without a backward pass and
// returns the 2N sequence log-probs: a reference model's (a frozen copy, or a LoRA policy with
// its adapter switched off), precomputed once or every step.
std::vector<double> PreferenceLogProbs(TrainModel& model, const int* inputs, const int* targets,
                                       int B, int T, bool average);

// One preference step on the policy: forward over the concatenated batch, the loss against
// `ref_logps` (2N values, as PreferenceLogProbs returns), and the backward pass accumulating
// loss_scale · ∂loss/∂θ into the policy's trainable gradients.
PreferenceLoss PreferenceForwardBackward(TrainModel& policy, const int* inputs, const int* targets,
                                         int B, int T, std::span<const double> ref_logps,
                                         const PreferenceLossOptions& opt, float loss_scale = 1.0f);

}  // namespace elm
