// The instruct-tuning loop (`elm sft`, `elm dpo`; docs/training.md, "Instruct tuning"): chat or
// preference JSONL (data/chat_dataset.h) over the model in model_name_or_path, full or LoRA, with
// transformers' AdamW, schedule, gradient accumulation and clipping, TRL's preference losses
// (train/preference_loss.h), a JSON-lines log of TRL's metrics that `elm plot --metric` draws,
// and checkpoints in the formats `elm train` writes (an HF folder, or a PEFT adapter for LoRA)
// with the optimizer state and data position, from which --resume continues bit for bit. Under
// mpirun, data-parallel through train/distributed.h (rank 0 logs and saves).
#pragma once

#include <cstdint>
#include <string>

#include "train/posttrain_config.h"
#include "train/preference_loss.h"

namespace elm {

struct PosttrainOptions {
  bool verbose = true;
  bool overwrite = false;  // start over in an output_dir that holds a run
  // A checkpoint folder, or a run folder (its newest complete checkpoint): continue from it. The
  // run then writes into the config's output_dir, keeping the log up to the checkpoint's step.
  std::string resume;
};

struct PosttrainResult {
  int64_t steps = 0;
  double first_loss = 0, final_loss = 0;
  PreferenceMetrics first_metrics, final_metrics;  // DPO: of the first and last step
  bool has_eval = false;
  double eval_loss = 0;
  PreferenceMetrics eval_metrics;  // DPO, over eval_file after training
  double rows_per_s = 0;           // sequences (SFT) or pairs (DPO) per second of training
  double ref_seconds = 0;          // time spent on reference log-probs
  std::string checkpoint, log_path;
  // QLoRA: the base matrices' size held quantized and as they were in f32 (0 without QLoRA).
  size_t base_quantized_bytes = 0, base_f32_bytes = 0;
  // Peak resident memory (VmHWM) of loading and setup, and of the training steps after it.
  size_t setup_peak_rss_bytes = 0, train_peak_rss_bytes = 0;
};

PosttrainResult RunPosttrain(const PosttrainConfig& cfg, const PosttrainOptions& opt);

}  // namespace elm
