#include "train/posttrain_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <numbers>

#include "base/error.h"
#include "base/mmap_file.h"
#include "base/spelling.h"

namespace elm {

namespace {

// Handbook / transformers keys that have no effect in elm (hub, logging, launcher, evaluation
// plumbing, the Python-side data pipeline).
const char* const kIgnoredRecipeKeys[] = {"torch_dtype",
                                          "use_flash_attention_2",
                                          "chat_template",
                                          "dataset_mixer",
                                          "dataset_splits",
                                          "dataset_configs",
                                          "preprocessing_num_workers",
                                          "do_eval",
                                          "evaluation_strategy",
                                          "eval_strategy",
                                          "gradient_checkpointing_kwargs",
                                          "hub_model_id",
                                          "hub_strategy",
                                          "hub_private_repo",
                                          "push_to_hub",
                                          "log_level",
                                          "logging_strategy",
                                          "logging_first_step",
                                          "save_strategy",
                                          "overwrite_output_dir",
                                          "report_to",
                                          "remove_unused_columns",
                                          "run_name",
                                          "tokenizer_name_or_path",
                                          "trust_remote_code",
                                          "model_revision",
                                          "truncation_mode",
                                          "auto_insert_empty_system_msg",
                                          "dataset_num_proc",
                                          "attn_implementation"};

struct RecipeReader {
  std::string origin;
  std::map<std::string, YAML::Node> keys;  // flat: top level, and elm.* from the elm block

  [[noreturn]] void Bad(const std::string& key, const char* want, const YAML::Node& n) const {
    std::string got = n.IsScalar() ? n.Scalar() : (n.IsSequence() ? "a list" : "a map");
    Fail(origin, ": key '", key, "' must be ", want, ", got '", got, "'");
  }
  template <typename T>
  bool Get(const std::string& key, T& out, const char* want) {
    const auto it = keys.find(key);
    if (it == keys.end()) return false;
    const YAML::Node n = it->second;
    keys.erase(it);
    if (n.IsNull()) return false;
    if (!n.IsScalar()) Bad(key, want, n);
    try {
      out = n.as<T>();
    } catch (const YAML::Exception&) {
      Bad(key, want, n);
    }
    return true;
  }
  bool Str(const std::string& key, std::string& out) { return Get(key, out, "a string"); }
  bool Num(const std::string& key, double& out) { return Get(key, out, "a number"); }
  bool Int(const std::string& key, int64_t& out) { return Get(key, out, "an integer"); }
  bool Flag(const std::string& key, bool& out) { return Get(key, out, "true or false"); }
  bool Int32(const std::string& key, int& out) {
    int64_t v = 0;
    if (!Int(key, v)) return false;
    if (v < INT32_MIN || v > INT32_MAX) Fail(origin, ": key '", key, "' is out of range");
    out = static_cast<int>(v);
    return true;
  }
};

std::string Resolve(const std::string& origin, const std::string& p) {
  if (p.empty() || std::filesystem::path(p).is_absolute() || std::filesystem::exists(p)) return p;
  const std::filesystem::path beside = std::filesystem::path(origin).parent_path() / p;
  return std::filesystem::exists(beside) ? beside.string() : p;
}

}  // namespace

PosttrainConfig ParsePosttrainConfig(const std::string& yaml_text, const std::string& origin,
                                     PosttrainTask task,
                                     const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    Fail(origin, ": not valid YAML: ", e.what());
  }
  if (!root.IsMap() && !root.IsNull()) Fail(origin, ": expected a map of keys");
  RecipeReader r{origin, {}};
  for (const auto& kv : root) {
    const std::string k = kv.first.as<std::string>();
    if (k == "elm") {
      if (!kv.second.IsMap()) Fail(origin, ": 'elm' must be a map of elm's own keys");
      for (const auto& e : kv.second) r.keys["elm." + e.first.as<std::string>()] = e.second;
    } else {
      r.keys[k] = kv.second;
    }
  }
  for (const std::string& o : overrides) {
    const size_t eq = o.find('=');
    if (eq == std::string::npos || eq == 0)
      Fail("--set '", o, "': expected key=value (e.g. --set beta=0.1)");
    try {
      r.keys[o.substr(0, eq)] = YAML::Load(o.substr(eq + 1));
    } catch (const YAML::Exception& e) {
      Fail("--set '", o, "': the value is not valid YAML: ", e.what());
    }
  }

  PosttrainConfig c;
  c.origin = origin;
  c.task = task;
  r.Str("model_name_or_path", c.model_name_or_path);
  r.Str("elm.ref_model", c.ref_model);
  r.Str("elm.train_file", c.train_file);
  r.Str("elm.eval_file", c.eval_file);
  r.Str("elm.tokenizer", c.tokenizer);
  std::string loss_type = "sigmoid";
  r.Str("loss_type", loss_type);
  c.loss.type = ParsePreferenceLossType(loss_type, "loss_type");
  r.Num("beta", c.loss.beta);
  r.Num("label_smoothing", c.loss.label_smoothing);
  r.Flag("precompute_ref_log_probs", c.precompute_ref_log_probs);
  r.Int32("max_length", c.max_length);
  r.Int32("max_prompt_length", c.max_prompt_length);
  int max_seq_length = 0;  // run_sft's name for max_length
  if (r.Int32("max_seq_length", max_seq_length)) c.max_length = max_seq_length;
  r.Num("learning_rate", c.learning_rate);
  r.Num("num_train_epochs", c.num_train_epochs);
  r.Int("max_steps", c.max_steps);
  r.Num("warmup_ratio", c.warmup_ratio);
  r.Int("warmup_steps", c.warmup_steps);
  r.Str("lr_scheduler_type", c.lr_scheduler_type);
  r.Int32("per_device_train_batch_size", c.batch_size);
  r.Int32("per_device_eval_batch_size", c.eval_batch_size);
  r.Int32("gradient_accumulation_steps", c.accum);
  r.Flag("gradient_checkpointing", c.gradient_checkpointing);
  r.Flag("bf16", c.bf16);
  bool fp16 = false;
  if (r.Flag("fp16", fp16) && fp16) Fail(origin, ": fp16 is not supported (use bf16: true)");
  std::string optim = "adamw_torch";
  r.Str("optim", optim);
  if (optim != "adamw_torch" && optim != "adamw_hf")
    Fail(origin, ": optim '", optim, "' is not implemented (elm has adamw_torch)");
  r.Num("adam_beta1", c.adamw.beta1);
  r.Num("adam_beta2", c.adamw.beta2);
  r.Num("adam_epsilon", c.adamw.eps);
  r.Num("weight_decay", c.adamw.weight_decay);
  r.Num("max_grad_norm", c.max_grad_norm);
  int64_t seed = 42;
  if (r.Int("seed", seed)) c.seed = static_cast<uint64_t>(seed);
  r.Str("output_dir", c.output_dir);
  r.Int32("logging_steps", c.logging_steps);
  r.Int("eval_steps", c.eval_steps);
  r.Int("save_steps", c.save_steps);
  r.Int32("save_total_limit", c.save_total_limit);

  bool use_peft = false;
  r.Flag("use_peft", use_peft);
  int64_t lora_r = 16;
  r.Int("lora_r", lora_r);
  c.lora.rank = static_cast<int>(lora_r);
  c.lora.alpha = 32;
  r.Num("lora_alpha", c.lora.alpha);
  c.lora.dropout = 0.05;
  r.Num("lora_dropout", c.lora.dropout);
  r.Flag("use_rslora", c.lora.rslora);
  r.Flag("use_dora", c.use_dora);
  std::vector<std::string> targets = {"qkv_proj", "out_proj", "proj_1", "proj_2"};
  if (auto it = r.keys.find("lora_target_modules"); it != r.keys.end()) {
    const YAML::Node n = it->second;
    r.keys.erase(it);
    if (!n.IsSequence()) r.Bad("lora_target_modules", "a list of module names", n);
    targets.clear();
    for (const auto& t : n) targets.push_back(t.as<std::string>());
  }
  if (use_peft) {
    c.lora.targets = {};
    for (const std::string& t : targets) {
      bool found = false;
      for (int k = 0; k < kLoraTargetCount; ++k)
        if (t == LoraTargetName(static_cast<LoraTarget>(k))) {
          c.lora.targets[static_cast<size_t>(k)] = true;
          found = true;
        }
      if (!found)
        Fail(origin, ": lora_target_modules: '", t,
             "' is not an OpenELM module (token_embeddings, qkv_proj, out_proj, proj_1, proj_2)");
    }
    c.lora.base_model = c.model_name_or_path;
    c.lora.dora = c.use_dora;
    if (c.use_dora && c.lora.has(LoraTarget::kEmbeddings))
      Fail(origin,
           ": use_dora: DoRA is not supported for token_embeddings (PEFT 0.9); leave it "
           "out of lora_target_modules");
  }

  // The handbook's ModelArguments for a quantized base (QLoRA): load_in_4bit with
  // bnb_4bit_quant_type nf4 (and use_bnb_nested_quant for double quantization), or load_in_8bit
  // (held as elm's Q8_0); elm.base_quant names the format directly.
  bool in4 = false, in8 = false;
  r.Flag("load_in_4bit", in4);
  r.Flag("load_in_8bit", in8);
  std::string quant_type = "nf4", base_quant;
  r.Str("bnb_4bit_quant_type", quant_type);
  r.Flag("use_bnb_nested_quant", c.base_double_quant);
  r.Str("elm.base_quant", base_quant);
  if (in4 && in8) Fail(origin, ": load_in_4bit and load_in_8bit are exclusive");
  if (in4 && quant_type != "nf4")
    Fail(origin, ": bnb_4bit_quant_type '", quant_type, "' is not implemented (elm has nf4)");
  if (in4) c.base_quant = BaseQuant::kNf4;
  if (in8) c.base_quant = BaseQuant::kQ8_0;
  if (!base_quant.empty()) c.base_quant = ParseBaseQuant(base_quant, "elm.base_quant");
  if (c.base_quant && !use_peft)
    Fail(origin, ": a quantized base (load_in_4bit, load_in_8bit, elm.base_quant) needs use_peft: ",
         "the quantized base is frozen");

  for (const char* k : kIgnoredRecipeKeys)
    if (r.keys.erase(k)) c.ignored_keys.push_back(k);
  std::vector<std::string> known = {"model_name_or_path",
                                    "loss_type",
                                    "beta",
                                    "label_smoothing",
                                    "precompute_ref_log_probs",
                                    "max_length",
                                    "max_prompt_length",
                                    "max_seq_length",
                                    "learning_rate",
                                    "num_train_epochs",
                                    "max_steps",
                                    "warmup_ratio",
                                    "warmup_steps",
                                    "lr_scheduler_type",
                                    "per_device_train_batch_size",
                                    "per_device_eval_batch_size",
                                    "gradient_accumulation_steps",
                                    "gradient_checkpointing",
                                    "bf16",
                                    "fp16",
                                    "optim",
                                    "adam_beta1",
                                    "adam_beta2",
                                    "adam_epsilon",
                                    "weight_decay",
                                    "max_grad_norm",
                                    "seed",
                                    "output_dir",
                                    "logging_steps",
                                    "eval_steps",
                                    "save_steps",
                                    "save_total_limit",
                                    "use_peft",
                                    "lora_r",
                                    "lora_alpha",
                                    "lora_dropout",
                                    "use_rslora",
                                    "use_dora",
                                    "lora_target_modules",
                                    "load_in_4bit",
                                    "load_in_8bit",
                                    "bnb_4bit_quant_type",
                                    "use_bnb_nested_quant"};
  const std::vector<std::string> elm_keys = {"elm.ref_model", "elm.train_file", "elm.eval_file",
                                             "elm.tokenizer", "elm.base_quant"};
  for (const auto& [k, n] : r.keys) {
    if (k.rfind("elm.", 0) == 0) {
      Fail(origin, ": unknown key '", k, "' in elm's own block; did you mean '",
           ClosestName(k, elm_keys), "'?");
    }
    const std::string hint = ClosestName(k, known);
    c.unknown_keys.push_back(hint.empty() ? k : k + " (did you mean " + hint + "?)");
  }

  if (c.model_name_or_path.empty())
    Fail(origin, ": model_name_or_path (the starting model) is required");
  if (c.train_file.empty()) Fail(origin, ": elm.train_file (a JSONL file) is required");
  c.model_name_or_path = Resolve(origin, c.model_name_or_path);
  c.ref_model = Resolve(origin, c.ref_model);
  c.train_file = Resolve(origin, c.train_file);
  c.eval_file = Resolve(origin, c.eval_file);
  c.tokenizer = Resolve(origin, c.tokenizer);
  if (c.batch_size <= 0 || c.eval_batch_size <= 0 || c.accum <= 0)
    Fail(origin, ": batch sizes and gradient_accumulation_steps must be positive");
  if (!(c.learning_rate >= 0)) Fail(origin, ": learning_rate must be non-negative");
  if (!(c.warmup_ratio >= 0 && c.warmup_ratio <= 1))
    Fail(origin, ": warmup_ratio must be in [0, 1]");
  if (c.max_steps <= 0 && !(c.num_train_epochs > 0))
    Fail(origin, ": num_train_epochs must be positive (or set max_steps)");
  const std::string s = c.lr_scheduler_type;
  if (s != "linear" && s != "cosine" && s != "constant" && s != "constant_with_warmup")
    Fail(origin, ": lr_scheduler_type '", s,
         "' is not implemented (elm has linear, cosine, constant, constant_with_warmup)");
  if (c.max_length <= 1) Fail(origin, ": max_length must be at least 2");
  if (task == PosttrainTask::kDpo && c.max_prompt_length >= c.max_length)
    Fail(origin, ": max_prompt_length (", c.max_prompt_length,
         ") leaves no room below max_length (", c.max_length, ")");
  if (task == PosttrainTask::kDpo && !(c.loss.beta > 0)) Fail(origin, ": beta must be positive");
  if (!(c.loss.label_smoothing >= 0 && c.loss.label_smoothing < 0.5))
    Fail(origin, ": label_smoothing must be in [0, 0.5)");
  if (use_peft && (c.lora.rank <= 0 || !(c.lora.dropout >= 0 && c.lora.dropout < 1)))
    Fail(origin, ": lora_r must be positive and lora_dropout in [0, 1)");
  return c;
}

PosttrainConfig LoadPosttrainConfig(const std::string& path, PosttrainTask task,
                                    const std::vector<std::string>& overrides) {
  return ParsePosttrainConfig(ReadTextFile(path), path, task, overrides);
}

double HfLearningRate(const std::string& type, double lr, int64_t step, int64_t total,
                      int64_t warmup) {
  const auto f = [](int64_t a, int64_t b) {
    return static_cast<double>(a) / static_cast<double>(std::max<int64_t>(1, b));
  };
  if (type == "constant") return lr;
  if (step < warmup) return lr * f(step, warmup);
  if (type == "constant_with_warmup") return lr;
  if (type == "linear") return lr * std::max(0.0, f(total - step, total - warmup));
  const double progress = f(step - warmup, total - warmup);  // cosine, half a cycle
  return lr * std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * progress)));
}

}  // namespace elm
