// elm plot --log train_log.jsonl [--log corenet.log ...] --output loss.svg: training and
// validation loss as an SVG; elm's JSONL logs and CoreNet's text logs, several on one chart.
#include <cstdio>
#include <filesystem>

#include "base/error.h"
#include "base/mmap_file.h"
#include "commands.h"
#include "report/loss_plot.h"

namespace elm::cli {

void RegisterPlotCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("plot", "Draw training and validation loss from a training log");
  struct Opts {
    std::vector<std::string> logs, labels;
    std::string output = "loss.svg", title, metric = "loss";
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--log", o->logs,
                  "train_log.jsonl written by elm train, or a CoreNet training log; repeat to "
                  "draw several runs on one chart")
      ->required();
  cmd->add_option("--label", o->labels,
                  "Legend name of each --log, in order (default: its folder or file name)");
  cmd->add_option("--output", o->output, "SVG file to write")->capture_default_str();
  cmd->add_option("--title", o->title, "Plot title (default: the run folder's name)");
  cmd->add_option("--metric", o->metric,
                  "Key of the log to draw, e.g. rewards/accuracies or rewards/margins (elm dpo)")
      ->capture_default_str();
  cmd->callback([o] {
    namespace fs = std::filesystem;
    if (!o->labels.empty() && o->labels.size() != o->logs.size())
      Fail("--label: give one per --log (", o->logs.size(), " logs, ", o->labels.size(),
           " labels)");
    std::vector<NamedLossSeries> runs;
    size_t train_points = 0, val_points = 0;
    for (size_t i = 0; i < o->logs.size(); ++i) {
      const fs::path p = fs::absolute(o->logs[i]);
      std::string label = o->labels.empty() ? "" : o->labels[i];
      if (label.empty())
        label =
            p.extension() == ".jsonl" ? p.parent_path().filename().string() : p.filename().string();
      runs.push_back({label, ReadLossSeries(o->logs[i], o->metric)});
      train_points += runs.back().series.train_step.size();
      val_points += runs.back().series.val_step.size();
    }
    std::string title = o->title;
    if (title.empty())
      title = (runs.size() == 1 ? fs::absolute(o->logs[0]).parent_path().filename().string()
                                : std::string("training")) +
              " " + o->metric;
    const std::string svg = LossPlotSvg(runs, title);
    WriteFileAtomic(o->output, svg.data(), svg.size());
    std::printf("wrote %s (%zu training points, %zu validation points)\n", o->output.c_str(),
                train_points, val_points);
  });
}

ELM_REGISTER_COMMAND(52, RegisterPlotCommand);

}  // namespace elm::cli
