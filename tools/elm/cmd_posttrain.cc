// elm sft / elm dpo --config RECIPE.yaml [--set key=value ...] [--overwrite | --resume PATH]:
// instruct tuning from
// an alignment-handbook-style recipe (docs/training.md, "Instruct tuning"): supervised
// fine-tuning on chat JSONL with the prompts masked, or preference tuning (TRL's sigmoid / hinge /
// ipo losses) on preference JSONL, full or LoRA. Two commands as the handbook has two scripts
// (run_sft.py, run_dpo.py) reading the same flat keys; `elm train` keeps CoreNet's format.
#include <cstdio>

#include "cli_util.h"
#include "commands.h"
#include "train/distributed.h"
#include "train/posttrain.h"
#include "train/posttrain_config.h"

namespace elm::cli {

namespace {
void Register(CLI::App& app, PosttrainTask task) {
  const bool dpo = task == PosttrainTask::kDpo;
  auto* cmd = app.add_subcommand(
      dpo ? "dpo" : "sft",
      dpo ? "Preference-tune a model (DPO / hinge / IPO) from an alignment-handbook-style recipe"
          : "Fine-tune a model on chats, prompts masked, from an alignment-handbook-style recipe");
  struct Opts {
    std::string config;
    std::vector<std::string> set;
    std::string resume;
    bool quiet = false, overwrite = false;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--config", o->config, "Recipe (YAML with alignment-handbook keys)")->required();
  cmd->add_option("--set", o->set, "Override a key, e.g. --set beta=0.05 (repeatable)");
  cmd->add_flag("--overwrite", o->overwrite, "Start over in an output_dir that holds a run");
  cmd->add_option("--resume", o->resume,
                  "Continue from a checkpoint folder, or the newest one of a run folder");
  AddThreadsOption(cmd, o->threads);
  cmd->add_flag("--quiet", o->quiet, "No progress output (the JSON log is still written)");
  cmd->callback([o, task, dpo] {
    const PosttrainConfig cfg = LoadPosttrainConfig(o->config, task, o->set);
    SetThreads(o->threads);
    PosttrainOptions opt;
    opt.verbose = !o->quiet;
    opt.overwrite = o->overwrite;
    opt.resume = o->resume;
    // Under mpirun, one rank of a data-parallel run (docs/training.md, "Resuming SFT and DPO"
    // and "Data parallel"); alone, MPI is never touched.
    const DistributedScope mpi;
    try {
      const PosttrainResult r = RunPosttrain(cfg, opt);
      if (!Distributed::is_root()) return;  // only rank 0 reports
      std::printf("trained %lld steps: loss %.4f -> %.4f", static_cast<long long>(r.steps),
                  r.first_loss, r.final_loss);
      if (dpo)
        std::printf(", rewards/accuracies %.3f -> %.3f", r.first_metrics.rewards_accuracies,
                    r.final_metrics.rewards_accuracies);
      std::printf(", %.2f %s/s\n", r.rows_per_s, dpo ? "pairs" : "sequences");
      if (dpo) std::printf("reference log-probs: %.1f s\n", r.ref_seconds);
      if (r.has_eval) {
        std::printf("eval: loss %.4f", r.eval_loss);
        if (dpo)
          std::printf(", rewards/accuracies %.3f, rewards/margins %.4f",
                      r.eval_metrics.rewards_accuracies, r.eval_metrics.rewards_margins);
        std::printf("\n");
      }
      std::printf("log: %s\ncheckpoint: %s\n", r.log_path.c_str(), r.checkpoint.c_str());
      if (cfg.lora.enabled())
        std::printf("LoRA adapter: elm generate --model %s --lora %s\n",
                    cfg.model_name_or_path.c_str(), r.checkpoint.c_str());
    } catch (const std::exception& e) {
      if (Distributed::size() == 1) throw;  // main() prints it
      // The other ranks may wait in a collective for this one: end the whole job.
      std::fflush(stdout);
      std::fprintf(stderr, "error (MPI rank %d of %d): %s\n", Distributed::rank(),
                   Distributed::size(), e.what());
      std::fflush(stderr);
      Distributed::Abort(1);
    }
  });
}
}  // namespace

void RegisterPosttrainCommands(CLI::App& app) {
  Register(app, PosttrainTask::kSft);
  Register(app, PosttrainTask::kDpo);
}

ELM_REGISTER_COMMAND(54, RegisterPosttrainCommands);

}  // namespace elm::cli
