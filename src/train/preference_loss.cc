#include "train/preference_loss.h"

#include <cmath>

#include "base/error.h"
#include "train/train_model.h"

namespace elm {

namespace {
// log σ(x), stable for large |x| (torch's F.logsigmoid).
double LogSigmoid(double x) {
  return x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x));
}
double Sigmoid(double x) {
  return x >= 0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x));
}
}  // namespace

PreferenceLossType ParsePreferenceLossType(const std::string& name, const std::string& key) {
  if (name == "sigmoid") return PreferenceLossType::kSigmoid;
  if (name == "hinge") return PreferenceLossType::kHinge;
  if (name == "ipo") return PreferenceLossType::kIpo;
  Fail("key '", key, "': loss_type '", name, "' is not implemented (elm has sigmoid, hinge, ipo)");
}

const char* PreferenceLossName(PreferenceLossType t) {
  switch (t) {
    case PreferenceLossType::kSigmoid:
      return "sigmoid";
    case PreferenceLossType::kHinge:
      return "hinge";
    case PreferenceLossType::kIpo:
      return "ipo";
  }
  return "?";
}

PreferenceLoss ComputePreferenceLoss(std::span<const double> pc, std::span<const double> pr,
                                     std::span<const double> rc, std::span<const double> rr,
                                     const PreferenceLossOptions& opt) {
  const size_t N = pc.size();
  if (N == 0 || pr.size() != N || rc.size() != N || rr.size() != N)
    Fail("preference loss: expected N > 0 log-probs for each of policy/reference chosen/rejected");
  if (!(opt.beta > 0)) Fail("preference loss: beta must be positive, got ", opt.beta);
  if (!(opt.label_smoothing >= 0 && opt.label_smoothing < 0.5))
    Fail("preference loss: label_smoothing must be in [0, 0.5), got ", opt.label_smoothing);
  const double beta = opt.beta, eps = opt.label_smoothing;
  PreferenceLoss out;
  out.h.resize(N);
  out.losses.resize(N);
  out.chosen_rewards.resize(N);
  out.rejected_rewards.resize(N);
  out.dloss_dchosen.resize(N);
  out.dloss_drejected.resize(N);
  PreferenceMetrics& m = out.metrics;
  for (size_t i = 0; i < N; ++i) {
    const double h = (pc[i] - pr[i]) - (rc[i] - rr[i]);
    double L = 0, dh = 0;  // L_i and dL_i/dh
    switch (opt.type) {
      case PreferenceLossType::kSigmoid:
        L = -(1 - eps) * LogSigmoid(beta * h) - eps * LogSigmoid(-beta * h);
        dh = -beta * ((1 - eps) * Sigmoid(-beta * h) - eps * Sigmoid(beta * h));
        break;
      case PreferenceLossType::kHinge:
        L = std::max(0.0, 1 - beta * h);
        dh = 1 - beta * h > 0 ? -beta : 0.0;
        break;
      case PreferenceLossType::kIpo: {
        const double d = h - 1 / (2 * beta);
        L = d * d;
        dh = 2 * d;
        break;
      }
    }
    out.h[i] = h;
    out.losses[i] = L;
    out.loss += L / static_cast<double>(N);
    out.dloss_dchosen[i] = dh / static_cast<double>(N);
    out.dloss_drejected[i] = -dh / static_cast<double>(N);
    out.chosen_rewards[i] = beta * (pc[i] - rc[i]);
    out.rejected_rewards[i] = beta * (pr[i] - rr[i]);
    m.rewards_chosen += out.chosen_rewards[i];
    m.rewards_rejected += out.rejected_rewards[i];
    m.rewards_margins += out.chosen_rewards[i] - out.rejected_rewards[i];
    m.rewards_accuracies += out.chosen_rewards[i] > out.rejected_rewards[i] ? 1.0 : 0.0;
    m.logps_chosen += pc[i];
    m.logps_rejected += pr[i];
  }
  const auto n = static_cast<double>(N);
  m.rewards_chosen /= n;
  m.rewards_rejected /= n;
  m.rewards_margins /= n;
  m.rewards_accuracies /= n;
  m.logps_chosen /= n;
  m.logps_rejected /= n;
  return out;
}

std::vector<double> SequenceLogProbs(std::span<const float> token_logps, const int* targets, int B,
                                     int T, bool average, int ignore) {
  ELM_CHECK(token_logps.size() == static_cast<size_t>(B) * static_cast<size_t>(T));
  std::vector<double> out(static_cast<size_t>(B), 0.0);
  for (int b = 0; b < B; ++b) {
    double sum = 0;
    int64_t n = 0;
    for (int t = 0; t < T; ++t) {
      const size_t k = static_cast<size_t>(b) * T + t;
      if (targets[k] == ignore) continue;
      sum += token_logps[k];
      ++n;
    }
    if (n == 0) Fail("preference batch: row ", b, " has no answer token");
    out[static_cast<size_t>(b)] = average ? sum / static_cast<double>(n) : sum;
  }
  return out;
}

namespace {
std::vector<double> ForwardLogProbs(TrainModel& model, const int* inputs, const int* targets, int B,
                                    int T, bool average) {
  if (B <= 0 || B % 2 != 0) Fail("preference batch: expected 2N rows (chosen, then rejected)");
  model.Forward(inputs, targets, B, T, LossOptions{});
  std::vector<float> tok(static_cast<size_t>(B) * static_cast<size_t>(T));
  model.TargetLogProbs(tok.data());
  return SequenceLogProbs(tok, targets, B, T, average);
}
}  // namespace

std::vector<double> PreferenceLogProbs(TrainModel& model, const int* inputs, const int* targets,
                                       int B, int T, bool average) {
  return ForwardLogProbs(model, inputs, targets, B, T, average);
}

PreferenceLoss PreferenceForwardBackward(TrainModel& policy, const int* inputs, const int* targets,
                                         int B, int T, std::span<const double> ref_logps,
                                         const PreferenceLossOptions& opt, float loss_scale) {
  const bool avg = opt.average_log_probs();
  const std::vector<double> pi = ForwardLogProbs(policy, inputs, targets, B, T, avg);
  if (ref_logps.size() != pi.size())
    Fail("preference step: ", ref_logps.size(), " reference log-probs for ", pi.size(), " rows");
  const size_t N = pi.size() / 2;
  const std::span<const double> p(pi);
  PreferenceLoss L = ComputePreferenceLoss(p.first(N), p.subspan(N), ref_logps.first(N),
                                           ref_logps.subspan(N), opt);
  // logits/*: before the backward pass overwrites the logits with their gradient.
  const int64_t V = policy.config().vocab_size;
  double sum[2] = {0, 0};
  int64_t rows[2] = {0, 0};
  for (int b = 0; b < B; ++b) {
    const int half = static_cast<size_t>(b) < N ? 0 : 1;
    for (int t = 0; t < T; ++t) {
      const int64_t n = static_cast<int64_t>(b) * T + t;
      if (targets[n] == -100) continue;
      const float* z = policy.logits() + n * V;
      double s = 0;
      for (int64_t v = 0; v < V; ++v) s += z[v];
      sum[half] += s;
      ++rows[half];
    }
  }
  L.metrics.logits_chosen = rows[0] > 0 ? sum[0] / static_cast<double>(rows[0] * V) : 0.0;
  L.metrics.logits_rejected = rows[1] > 0 ? sum[1] / static_cast<double>(rows[1] * V) : 0.0;
  // ∂loss/∂logp[token] = ∂loss/∂π_row (÷ the row's token count for averages); the cross-entropy
  // of a token is −logp, so its weight is the negative.
  std::vector<float> scale(static_cast<size_t>(B) * static_cast<size_t>(T), 0.0f);
  for (int b = 0; b < B; ++b) {
    const size_t row = static_cast<size_t>(b);
    const double d = row < N ? L.dloss_dchosen[row] : L.dloss_drejected[row - N];
    int64_t n = 0;
    for (int t = 0; t < T; ++t) n += targets[row * T + t] != -100;
    const double w = -d * loss_scale / (avg ? static_cast<double>(n) : 1.0);
    for (int t = 0; t < T; ++t)
      if (targets[row * T + t] != -100) scale[row * T + t] = static_cast<float>(w);
  }
  policy.BackwardRows(scale.data());
  return L;
}

}  // namespace elm
