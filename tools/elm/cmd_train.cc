// elm train --config FILE.yaml [--set key=value ...] [--init-from MODEL_OR_PT]
//           [--resume DIR | --overwrite]: pretrain an
// OpenELM from a CoreNet-style config (docs/training.md); under `mpirun -np N` it trains
// data-parallel. A run folder that holds a run is never written over silently
// (train/run_folder.h).
// elm train --dry-run FILE.yaml [--ranks N] [--memory 24GB]: prints the per-rank memory plan
// (train/memory_plan.h) and trains nothing.
#include <cstdio>
#include <exception>

#include "base/error.h"
#include "cli_util.h"
#include "commands.h"
#include "model/lora_adapter.h"
#include "train/distributed.h"
#include "train/memory_plan.h"
#include "train/train_config.h"
#include "train/train_log.h"
#include "train/trainer.h"

namespace elm::cli {

namespace {

void DryRun(const std::string& path, const std::vector<std::string>& set, int ranks,
            const std::string& memory, bool checkpointing) {
  const int64_t budget = memory.empty() ? 0 : ParseByteSize(memory, "--memory");
  const TrainConfig cfg = LoadTrainConfig(path, set, /*require_data=*/false);
  MemoryPlanInput in;
  in.model = cfg.model;
  in.seq_len = cfg.seq_len;
  in.micro_batch = cfg.batch_size;
  in.mixed_precision = cfg.mixed_precision;
  if (cfg.lora.enabled())
    in.trainable_params = static_cast<int64_t>(LoraLayout(cfg.model, cfg.lora).size());
  std::fputs(MemoryPlanReport(
                 in, ranks > 0 ? std::vector<int>{ranks} : std::vector<int>{1, 2, 4, 8, 16}, budget)
                 .c_str(),
             stdout);
  std::printf(
      "the config %s activation checkpointing (model.activation_checkpointing); micro-batch = "
      "dataset.train_batch_size0 sequences per rank; memory is by formula (docs/training.md, "
      "\"Memory plan\")\n",
      cfg.activation_checkpointing || checkpointing ? "turns on" : "leaves off");
}

}  // namespace

void RegisterTrainCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "train", "Pretrain an OpenELM from a CoreNet-style YAML config (logs, checkpoints, resume)");
  struct Opts {
    std::string config, resume, init_from, dry_run, memory;
    int ranks = 0;
    std::vector<std::string> set;
    bool quiet = false, overwrite = false, activation_checkpointing = false;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--config", o->config, "Training config (CoreNet YAML)");
  cmd->add_option("--dry-run", o->dry_run,
                  "Print the per-rank memory plan of this config (parameters, gradients, AdamW "
                  "moments, activations with and without checkpointing, buffers) for each "
                  "sharding mode, and train nothing");
  cmd->add_option("--ranks", o->ranks,
                  "With --dry-run: the MPI rank count to plan for (default: 1, 2, 4, 8, 16)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--memory", o->memory,
                  "With --dry-run: the memory per rank (24GB, 24GiB, ...); prints the largest "
                  "micro-batch that fits");
  cmd->add_option("--set", o->set,
                  "Override a config key by its dotted path, e.g. --set optim.weight_decay=0.05 "
                  "(repeatable)");
  auto* resume = cmd->add_option(
      "--resume", o->resume,
      "Continue from a checkpoint folder, or the newest complete one in a run folder");
  cmd->add_flag("--overwrite", o->overwrite,
                "Delete the run folder's previous run (checkpoints, log) and start over")
      ->excludes(resume);
  cmd->add_option("--init-from", o->init_from,
                  "Start from this model (as --set elm.init_from=PATH); a CoreNet training "
                  "checkpoint (.pt) also continues its run: AdamW moments and step");
  cmd->add_flag("--activation-checkpointing", o->activation_checkpointing,
                "Recompute each decoder layer's forward in backward: keeps only the layers' "
                "inputs (as --set model.activation_checkpointing=true; the same gradients)");
  AddThreadsOption(cmd, o->threads);
  cmd->add_flag("--quiet", o->quiet, "No progress output (the JSON log is still written)");
  cmd->callback([o] {
    if (!o->dry_run.empty()) {
      DryRun(o->dry_run, o->set, o->ranks, o->memory, o->activation_checkpointing);
      return;
    }
    if (o->config.empty()) Fail("elm train: give --config FILE.yaml (or --dry-run FILE.yaml)");
    if (o->ranks != 0 || !o->memory.empty())
      Fail("elm train: --ranks and --memory go with --dry-run (mpirun -np sets the ranks)");
    // The config is read first: a mistake in it ends every process before MPI starts.
    std::vector<std::string> set = o->set;
    if (!o->init_from.empty()) set.push_back("elm.init_from=" + o->init_from);
    if (o->activation_checkpointing) set.push_back("model.activation_checkpointing=true");
    const TrainConfig cfg = LoadTrainConfig(o->config, set);
    // Started by mpirun, this process is one rank of a data-parallel job (docs/training.md); a
    // plain `elm train` never touches MPI.
    const DistributedScope mpi;
    try {
      TrainOptions opt;
      opt.resume = o->resume;
      opt.verbose = !o->quiet;
      opt.overwrite = o->overwrite;
      SetThreads(o->threads);
      const TrainResult r = RunTraining(cfg, opt);
      if (!Distributed::is_root()) return;  // only rank 0 reports
      std::printf("trained steps %lld..%lld: loss %.4f -> %.4f",
                  static_cast<long long>(r.first_step), static_cast<long long>(r.steps),
                  r.first_loss, r.final_loss);
      if (r.val_loss >= 0) std::printf(", validation loss %.4f", r.val_loss);
      std::printf(", %.0f tokens/s\n", r.tokens_per_s);
      if (r.peak_rss_bytes > 0)
        std::printf("memory: peak RSS %.1f MB, activations %.1f MB (activation checkpointing %s)\n",
                    static_cast<double>(r.peak_rss_bytes) / 1e6,
                    static_cast<double>(r.activation_bytes) / 1e6,
                    cfg.activation_checkpointing ? "on" : "off");
      std::printf("log: %s\ncheckpoint: %s\n", r.log_path.c_str(), r.checkpoint.c_str());
      if (cfg.lora.enabled() && !r.checkpoint.empty())
        std::printf("LoRA adapter: elm generate --model %s --lora %s\n", cfg.init_from.c_str(),
                    r.checkpoint.c_str());
    } catch (const std::exception& e) {
      if (Distributed::size() == 1) throw;  // main() prints it
      // The other ranks may be waiting in a collective for this one: end the whole job.
      std::fflush(stdout);
      std::fprintf(stderr, "error (MPI rank %d of %d): %s\n", Distributed::rank(),
                   Distributed::size(), e.what());
      std::fflush(stderr);
      Distributed::Abort(1);
    }
  });
}

ELM_REGISTER_COMMAND(50, RegisterTrainCommand);

}  // namespace elm::cli
