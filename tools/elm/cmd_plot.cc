// elm plot --log train_log.jsonl --output loss.svg: training and validation loss as an SVG.
#include <cstdio>
#include <filesystem>

#include "base/mmap_file.h"
#include "commands.h"
#include "report/loss_plot.h"

namespace elm::cli {

void RegisterPlotCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("plot", "Draw training and validation loss from a training log");
  struct Opts {
    std::string log, output = "loss.svg", title, metric = "loss";
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--log", o->log, "train_log.jsonl written by elm train")->required();
  cmd->add_option("--output", o->output, "SVG file to write")->capture_default_str();
  cmd->add_option("--title", o->title, "Plot title (default: the run folder's name)");
  cmd->add_option("--metric", o->metric,
                  "Key of the log to draw, e.g. rewards/accuracies or rewards/margins (elm dpo)")
      ->capture_default_str();
  cmd->callback([o] {
    const LossSeries s = ReadLossSeries(o->log, o->metric);
    std::string title = o->title;
    if (title.empty())
      title = std::filesystem::absolute(o->log).parent_path().filename().string() + " " + o->metric;
    const std::string svg = LossPlotSvg(s, title);
    WriteFileAtomic(o->output, svg.data(), svg.size());
    std::printf("wrote %s (%zu training points, %zu validation points)\n", o->output.c_str(),
                s.train_step.size(), s.val_step.size());
  });
}

ELM_REGISTER_COMMAND(52, RegisterPlotCommand);

}  // namespace elm::cli
