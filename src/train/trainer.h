// The training loop: data, model, AdamW with the CoreNet schedule and clipping, gradient
// accumulation, periodic validation, logs and checkpoints, and exact resume.
#pragma once

#include <cstdint>
#include <string>

#include "train/train_config.h"

namespace elm {

struct TrainOptions {
  std::string resume;   // a checkpoint folder or a run folder ("" = common.auto_resume decides)
  bool verbose = true;  // progress and messages on stderr
};

struct TrainResult {
  int64_t first_step = 0;   // step the run started from (0, or the checkpoint's step)
  int64_t steps = 0;        // optimizer steps completed in total
  double first_loss = 0;    // loss of this run's first step
  double final_loss = 0;    // loss of the last step
  double val_loss = -1;     // last validation loss (−1 if none)
  double tokens_per_s = 0;  // mean over this run's steps
  std::string checkpoint;   // the last checkpoint written
  std::string log_path;
};

TrainResult RunTraining(const TrainConfig& cfg, const TrainOptions& opt);

// Peak f32 FLOP/s assumed for MFU when elm.peak_gflops is not set: threads × 3 GHz × 32 FLOP per
// cycle (two 8-wide FMA units), a nominal AVX2 core; twice that with bf16 mixed precision.
double NominalPeakFlops();

}  // namespace elm
