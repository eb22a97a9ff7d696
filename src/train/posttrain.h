// The instruct-tuning loop (`elm sft`, `elm dpo`; docs/training.md, "Instruct tuning"): chat or
// preference JSONL (data/chat_dataset.h) over the model in model_name_or_path, full or LoRA, with
// transformers' AdamW, schedule, gradient accumulation and clipping, TRL's preference losses
// (train/preference_loss.h), a JSON-lines log of TRL's metrics that `elm plot --metric` draws,
// and checkpoints in the formats `elm train` writes (an HF folder, or a PEFT adapter for LoRA).
// One process; no resume.
#pragma once

#include <cstdint>
#include <string>

#include "train/posttrain_config.h"
#include "train/preference_loss.h"

namespace elm {

struct PosttrainOptions {
  bool verbose = true;
  bool overwrite = false;  // start over in an output_dir that holds a log
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
};

PosttrainResult RunPosttrain(const PosttrainConfig& cfg, const PosttrainOptions& opt);

}  // namespace elm
