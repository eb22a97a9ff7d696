#include "eval/metrics.h"

#include <cmath>
#include <limits>

#include "base/error.h"

namespace elm::eval {

int ArgMax(std::span<const double> values) {
  ELM_CHECK(!values.empty());
  size_t best = 0;
  for (size_t i = 1; i < values.size(); ++i)
    if (values[i] > values[best]) best = i;
  return static_cast<int>(best);
}

ChoiceOutcome ScoreChoices(std::span<const double> lls, std::span<const double> choice_chars,
                           int gold) {
  ELM_CHECK(lls.size() == choice_chars.size() && !lls.empty());
  std::vector<double> norm(lls.size());
  // An empty choice divides by zero like numpy does (ll < 0 gives -inf: never chosen).
  for (size_t i = 0; i < lls.size(); ++i) norm[i] = lls[i] / choice_chars[i];
  ChoiceOutcome o;
  o.pred = ArgMax(lls);
  o.pred_norm = ArgMax(norm);
  o.acc = o.pred == gold ? 1.0 : 0.0;
  o.acc_norm = o.pred_norm == gold ? 1.0 : 0.0;
  return o;
}

double Mean(std::span<const double> v) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

double MeanStderr(std::span<const double> v) {
  if (v.size() < 2) return std::numeric_limits<double>::quiet_NaN();
  const double mu = Mean(v);
  double ss = 0;
  for (double x : v) ss += (x - mu) * (x - mu);
  const double n = static_cast<double>(v.size());
  return std::sqrt(ss / (n - 1)) / std::sqrt(n);
}

double Perplexity(std::span<const double> lls) {
  return std::exp(-Mean(lls));
}

double PerplexityStderr(std::span<const double> lls) {
  return Perplexity(lls) * MeanStderr(lls);
}

}  // namespace elm::eval
