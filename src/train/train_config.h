// Training configuration read from CoreNet-style YAML (apple/corenet
// projects/openelm/pretraining_configs, docs/openelm.md §6.1–6.2): nested keys, YAML anchors,
// `--set a.b.c=v` overrides by dotted path. elm reads the CoreNet keys it implements, accepts (and
// lists) the ones that have no effect in elm (ddp, fsdp, workers, ...), warns about keys it does
// not know (an unknown key in elm's own `elm:` block is an error with "did you mean"), and
// rejects wrong types with an error naming the key. elm's own settings live under a
// top-level `elm:` block; small models may spell out their shape under
// model.language_modeling.general_gpt (docs/training.md lists every key).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "config/model_config.h"
#include "model/lora_adapter.h"
#include "train/optimizer.h"

namespace elm {

// One entry of dataset.language_modeling.general_lm.train_data_info.
struct DataSourceInfo {
  std::string file_name;          // may contain "{file_id:05d}"-style fields, $VARS
  std::string text_key = "text";  // JSONL field holding the document
  int64_t file_id_begin = -1;     // file_id_range [begin, end) when file_name has a field
  int64_t file_id_end = -1;
};

enum class Packing { kAuto, kPacked, kDocuments };

// How data-parallel ranks share the training state (train/sharding.h, docs/training.md "Sharded
// data parallelism"): CoreNet's fsdp.sharding_strategy, or elm.zero_stage.
enum class Sharding {
  kNoShard,    // no_shard / ZeRO-0: everything replicated (DDP)
  kOptimizer,  // ZeRO-1: AdamW moments sharded
  kGradients,  // shard_grad_op / ZeRO-2: moments and gradients sharded
  kFull,       // full_shard / ZeRO-3: parameters too
};
const char* ShardingName(Sharding s);

struct TrainConfig {
  std::string origin;    // the YAML file (for messages)
  std::string base_dir;  // the YAML file's folder (relative paths fall back to it)
  std::string taskname;

  // ---- model ----
  std::string model_name;  // preset name, "" when the shape is given in full
  ModelConfig model;       // resolved (layers derived)
  std::string init_from;   // elm.init_from: start from this HF checkpoint instead of random init
  // model.lora.use_lora + model.lora.config (CoreNet's PEFT keys, docs/openelm.md §6.10): LoRA
  // fine-tuning of the frozen init_from model; lora.enabled() is false for full training.
  LoraSettings lora;
  // model.activation_checkpointing: recompute each decoder layer's forward in backward (keeps
  // only the layers' inputs; the same gradients, bit for bit).
  bool activation_checkpointing = false;
  // elm.lora_base_weights: round the frozen base to this type's grid (q8_0, q4_0, bf16, f16;
  // fake quantization, FakeQuantizeBase); unset = the base as stored.
  std::optional<DType> lora_base_weights;

  // ---- data ----
  std::vector<DataSourceInfo> train_data, val_data;
  int seq_len = 2048;   // dataset.language_modeling.sequence_length
  int batch_size = 16;  // dataset.train_batch_size0 (sequences per micro-batch)
  int accum_freq = 1;   // common.accum_freq (micro-batches per optimizer step)
  int min_tokens_per_text = 256;
  int min_characters_per_text = 200;
  int document_split_size = 2048;  // words per document piece
  bool shuffle = true;
  Packing packing = Packing::kAuto;
  double val_fraction = 0;  // elm.val_fraction: held-out share of the samples
  int val_batches = 8;      // elm.val_batches: batches per validation pass (0 = the whole split)
  int eval_every = 0;       // common.eval_every_k_iterations (0 = only at the end)
  std::string tokenizer;    // tokenizer.json; "" = built-in Llama-2
  bool nfc = true, append_sot = true, append_eot = true;
  std::string cache_dir;   // elm.cache_dir: tokenized cache ("" = <results_loc>/token_cache)
  int padding_index = -1;  // model.language_modeling.general_gpt.padding_index

  // ---- loss ----
  int ignore_index = -100;
  bool use_z_loss = false;
  double z_loss_eps = 1e-4;

  // ---- optimizer and schedule ----
  AdamWParams adamw;
  LrSchedule schedule;
  double grad_clip = 0;   // common.grad_clip (≤ 0: off)
  int64_t max_steps = 0;  // elm.max_steps: stop after this many steps (default max_iterations)

  // ---- run ----
  std::string results_loc = "results";
  std::string run_label = "train";
  uint64_t seed = 0;
  int log_freq = 1;              // common.log_freq: steps between console lines
  int save_interval = 5000;      // common.save_interval_freq
  int keep_last = 3;             // elm.keep_last_checkpoints (0 = keep all)
  bool auto_resume = false;      // common.auto_resume
  double peak_gflops = 0;        // elm.peak_gflops for MFU (0 = estimate for this machine)
  bool mixed_precision = false;  // common.mixed_precision (dtype bfloat16): bf16 matrix products
  Sharding sharding = Sharding::kNoShard;  // fsdp.sharding_strategy or elm.zero_stage
  bool reduce_bf16 = false;       // fsdp.gradient_reduction_datatype: bfloat16 (default float32)
  bool overlap_reduction = true;  // elm.overlap_reduction: reduce buckets during the backward

  std::vector<std::string> overrides;          // the --set strings applied, in order
  std::vector<std::string> ignored_keys;       // accepted, no effect in elm
  std::vector<std::string> unknown_keys;       // warned about (elm.* ones are errors)
  std::vector<std::string> unknown_key_hints;  // per unknown key: the closest known key, or ""

  std::string run_dir() const;  // results_loc/run_label
  int64_t tokens_per_step() const {
    return static_cast<int64_t>(seq_len) * batch_size * accum_freq;
  }
};

// Parses YAML text; `overrides` are "dotted.key=value" strings (value parsed as YAML, so lists
// work: "a.b=[0.5, 1.0]"). Throws elm::Error naming `origin` and the key on any problem.
// `require_data` = false accepts a config without training data (elm init reads only the model).
TrainConfig ParseTrainConfig(const std::string& yaml_text, const std::string& origin,
                             const std::vector<std::string>& overrides = {},
                             bool require_data = true);
TrainConfig LoadTrainConfig(const std::string& path, const std::vector<std::string>& overrides = {},
                            bool require_data = true);

// Expands $VAR / ${VAR} from the environment (unset variables are an error naming `key`).
std::string ExpandEnv(const std::string& s, const std::string& key);

}  // namespace elm
