// `elm plot`: training and validation loss from a train_log.jsonl as a self-contained SVG
// (written by hand: axes with round-number ticks, the raw training loss, its moving average and
// the validation points).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace elm {

struct LossSeries {
  std::vector<double> train_step, train_loss;
  std::vector<double> val_step, val_loss;
  std::string metric = "loss";  // the key drawn: "loss", or any number a step line holds
};

// Reads the step and val lines of a training log (other lines are skipped): elm's
// train_log.jsonl, or CoreNet's text log (report/corenet_log.h, detected from its lines). A record
// whose step is not after the previous one's replaces the records from that step on (a resume
// rewound the run), so the series are strictly increasing in step: one run.
// `metric` picks another key of elm's step lines (e.g. "rewards/accuracies", logged by elm dpo),
// with "val_" + metric from the validation lines; a CoreNet log has the loss only.
LossSeries ReadLossSeries(const std::string& log_path, const std::string& metric = "loss");
// Several runs on one chart (elm plot --log A --log B): each its own colours and legend entries.
struct NamedLossSeries {
  std::string label;
  LossSeries series;
};
// The SVG document; `title` goes above the plot.
std::string LossPlotSvg(const LossSeries& s, const std::string& title, int width = 800,
                        int height = 480);
std::string LossPlotSvg(const std::vector<NamedLossSeries>& runs, const std::string& title,
                        int width = 800, int height = 480);

}  // namespace elm
