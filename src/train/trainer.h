// The training loop: data, model, AdamW with the CoreNet schedule and clipping, gradient
// accumulation, periodic validation, logs and checkpoints, and exact resume. Full-parameter and
// LoRA runs take the same path: the model's trainable() slab (train/slab.h) is what the
// optimizer, the MPI reductions and the checkpoints see.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "train/checkpoint.h"
#include "train/data_loader.h"
#include "train/dataset.h"
#include "train/sharding.h"
#include "train/train_config.h"
#include "train/train_log.h"
#include "train/train_model.h"

namespace elm {

struct TrainOptions {
  std::string resume;   // a checkpoint folder or a run folder ("" = common.auto_resume decides)
  bool verbose = true;  // progress and messages on stderr
  // Start over in a run folder that holds another run (train/run_folder.h); without it, and not
  // resuming, such a folder is an error.
  bool overwrite = false;
};

struct TrainResult {
  int64_t first_step = 0;        // step the run started from (0, or the checkpoint's step)
  int64_t steps = 0;             // optimizer steps completed in total
  double first_loss = 0;         // loss of this run's first step
  double final_loss = 0;         // loss of the last step
  double val_loss = -1;          // last validation loss (−1 if none)
  double tokens_per_s = 0;       // mean over this run's steps
  int64_t peak_rss_bytes = 0;    // rank 0's peak resident set (train_log.h PeakRssBytes)
  int64_t activation_bytes = 0;  // rank 0's model activations held for backward, last step
  std::string checkpoint;        // the last checkpoint written
  std::string log_path;
};

// One training run. Data parallelism (docs/training.md): every MPI rank builds a Trainer and runs
// it on its own share of each global batch; only rank 0 prints, logs and writes files. The
// constructor loads the data, builds the model and restores (resume, init_from or a fresh init)
// the state on rank 0 and sends it to the others; Run trains to max_steps or a stop signal.
class Trainer {
 public:
  Trainer(const TrainConfig& cfg, const TrainOptions& opt);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  TrainResult Run();

 private:
  // One optimizer step's forward/backward over its micro-batches, summed (reduced over ranks).
  struct StepSums {
    double loss = 0, ce = 0;
    int64_t n_valid = 0;
    bool stop = false;  // a stop signal arrived (on any rank)
  };

  void Say(const std::string& s) const;
  void Message(const std::string& s) const;
  void WarnAboutKeys() const;
  void LoadData();
  void CheckRanksAgree() const;
  void Restore();
  void ResumeFrom(const std::string& dir);
  void InitWeights();
  void ShareState();
  void Describe() const;
  void CopyConfig() const;
  void OpenLog();

  StepSums ForwardBackward();
  void AllReduce(StepSums& s);
  double UpdateWeights(double lr);
  void LogStep(const StepSums& s, double lr, double norm, double dt);
  void Evaluate();
  void Save();
  TrainResult Finish();

  const TrainConfig& cfg_;
  const TrainOptions& opt_;
  const int rank_, world_;
  const bool root_, verbose_;
  const std::string run_dir_, ckpt_root_;
  DataSplits data_;
  std::unique_ptr<DataLoader> loader_, val_;
  TrainModel model_;
  std::unique_ptr<DataParallel> dp_;  // gradient reduction and sharding (train/sharding.h)
  TrainerState st_;
  bool resumed_ = false;
  bool continued_ = false;       // started from a CoreNet training checkpoint's moments and step
  int64_t tokens_per_step_ = 0;  // the global batch: every rank's micro-batches of a step
  LossOptions lo_;
  double peak_ = 0, flops_per_token_ = 0;
  std::vector<int> inputs_, targets_;  // [B, T]
  std::unique_ptr<TrainLog> log_;
  std::unique_ptr<Progress> progress_;
  TrainResult res_;
  std::chrono::steady_clock::time_point t_run_;
  double step_seconds_ = 0;
  bool saved_last_ = false;
};

// What a checkpoint (its trainer_state.json "fingerprint") must agree on to be resumed by this
// config: the model's shape, sequence length, batch size, accumulation and the LoRA settings.
std::string CheckpointFingerprint(const TrainConfig& c);

// Trainer(cfg, opt).Run().
TrainResult RunTraining(const TrainConfig& cfg, const TrainOptions& opt);

// Peak f32 FLOP/s assumed for MFU when elm.peak_gflops is not set: threads × 3 GHz × 32 FLOP per
// cycle (two 8-wide FMA units), a nominal AVX2 core; twice that with bf16 mixed precision.
double NominalPeakFlops();

}  // namespace elm
