// Instruct-tuning recipes (`elm sft`, `elm dpo`; docs/training.md, "Instruct tuning"): a flat YAML
// whose keys are alignment-handbook's (recipes/*/config_*.yaml, read by scripts/run_sft.py and
// run_dpo.py into transformers' TrainingArguments, TRL's DPOConfig and the handbook's
// ModelArguments), plus elm's own `elm:` block for what the handbook takes from the hub (the data
// files). Keys elm reads are listed in docs/training.md; hub, logging and launcher plumbing
// (dataset_mixer, push_to_hub, …) is accepted without effect and listed once; an unknown key is a
// warning with the closest known key, an unknown key under `elm:` an error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/lora_adapter.h"
#include "train/optimizer.h"
#include "train/preference_loss.h"
#include "train/qlora_base.h"

namespace elm {

enum class PosttrainTask { kSft, kDpo };

struct PosttrainConfig {
  std::string origin;  // the YAML file, for messages
  PosttrainTask task = PosttrainTask::kDpo;

  std::string model_name_or_path;     // the starting HF folder (the policy, and the reference)
  std::string ref_model;              // elm.ref_model: another reference folder ("" = the start)
  std::string train_file, eval_file;  // elm.train_file / elm.eval_file: JSONL
  std::string tokenizer;              // elm.tokenizer ("" = the model folder's, else built-in)

  // TRL / handbook
  PreferenceLossOptions loss;  // loss_type, beta, label_smoothing
  bool precompute_ref_log_probs = false;
  int max_length = 1024, max_prompt_length = 512;

  // TrainingArguments
  double learning_rate = 5e-5;
  double num_train_epochs = 3;
  int64_t max_steps = -1;  // > 0 overrides the epochs
  double warmup_ratio = 0;
  int64_t warmup_steps = 0;                  // > 0 overrides warmup_ratio
  std::string lr_scheduler_type = "linear";  // linear, cosine, constant, constant_with_warmup
  int batch_size = 8;                        // per_device_train_batch_size
  int eval_batch_size = 8;                   // per_device_eval_batch_size
  int accum = 1;                             // gradient_accumulation_steps
  bool gradient_checkpointing = false;       // TrainModel::set_activation_checkpointing
  bool bf16 = false;                         // bf16 matrix products, f32 master weights
  AdamWParams adamw{0.9, 0.999, 1e-8, 0.0};  // adam_beta1/2, adam_epsilon, weight_decay
  double max_grad_norm = 1.0;
  uint64_t seed = 42;
  std::string output_dir = "results/posttrain";
  int logging_steps = 10;  // console lines (the JSON log has every step)
  int64_t eval_steps = 0;  // 0: evaluate at the end only
  int64_t save_steps = 500;
  int save_total_limit = 0;  // 0: keep all

  // ModelArguments (PEFT): use_peft, lora_r, lora_alpha, lora_dropout, lora_target_modules
  LoraSettings lora;  // enabled() when use_peft
  bool use_dora = false;
  // QLoRA (train/qlora_base.h): load_in_4bit → nf4, load_in_8bit → q8_0, or elm.base_quant;
  // use_bnb_nested_quant → NF4's double quantization. Unset: the base in f32.
  std::optional<BaseQuant> base_quant;
  bool base_double_quant = false;

  std::vector<std::string> ignored_keys;  // accepted without effect
  std::vector<std::string> unknown_keys;  // warned about, each with a hint where one is close
};

// Parses the YAML text; `overrides` are "key=value" (value parsed as YAML). Throws elm::Error
// naming `origin` and the key.
PosttrainConfig ParsePosttrainConfig(const std::string& yaml_text, const std::string& origin,
                                     PosttrainTask task,
                                     const std::vector<std::string>& overrides = {});
PosttrainConfig LoadPosttrainConfig(const std::string& path, PosttrainTask task,
                                    const std::vector<std::string>& overrides = {});

// transformers' get_scheduler learning rate after `step` optimizer steps of `total` (0-based),
// peak `lr`, `warmup` steps of linear warm-up from 0.
double HfLearningRate(const std::string& type, double lr, int64_t step, int64_t total,
                      int64_t warmup);

}  // namespace elm
