// lm-eval's per-doc metrics and their aggregation (lm_eval/api/task.py process_results,
// lm_eval/api/metrics.py): acc and acc_norm for multiple choice, is_greedy accuracy and
// perplexity for LAMBADA, means with the sample standard error of the mean.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

namespace elm::eval {

// np.argmax: the first index of the maximum.
int ArgMax(std::span<const double> values);

struct ChoiceOutcome {
  int pred = 0;       // argmax of the log-likelihoods
  int pred_norm = 0;  // argmax of log-likelihood / length in characters
  double acc = 0, acc_norm = 0;
};
// choice_chars: len(choice) in Python code points, without the target delimiter.
ChoiceOutcome ScoreChoices(std::span<const double> lls, std::span<const double> choice_chars,
                           int gold);

double Mean(std::span<const double> v);
// lm-eval's mean_stderr: sample standard deviation (n - 1) / sqrt(n); NaN when n < 2.
double MeanStderr(std::span<const double> v);
// lambada perplexity: exp(-mean(ll)).
double Perplexity(std::span<const double> lls);
// lm-eval bootstraps this (random, 100k resamples); elm reports the delta-method estimate
// perplexity * stderr(mean ll), which bootstrapping converges to for large n. NaN when n < 2.
double PerplexityStderr(std::span<const double> lls);

struct Metric {
  std::string name;  // "acc", "acc_norm", "perplexity"
  double value = 0;
  double std_err = 0;  // standard error; NaN when undefined
};

}  // namespace elm::eval
