// What Apple's CoreNet writes with torch.save (apple/corenet corenet/utils/checkpoint_utils.py;
// docs/formats.md, "CoreNet checkpoints"): model files (checkpoint_last.pt,
// checkpoint_epoch_E_iter_I.pt, checkpoint_ema_*.pt, checkpoint_average.pt) hold one model state
// dict, parameter name -> tensor; training checkpoints (training_checkpoint_*.pt) hold a dict with
// "iterations", "epoch", "model_state_dict", "optim_state_dict" (torch.optim.AdamW's),
// "best_metric", "is_interval_ckpt" and, when used, "gradient_scaler_state_dict" and
// "ema_state_dict". CoreNet's parameter names are HF's without the "transformer." prefix
// (GeneralGPTModel's modules: token_embeddings, layers.N.attn.qkv_proj, ..., norm), and its
// untied output layer is "classifier" (HF "lm_head").
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "io/pytorch_checkpoint.h"

namespace elm {

// Which weights of a training checkpoint to read: "model" (model_state_dict; the default) or
// "ema" (ema_state_dict). A model file has one state dict, read whatever this says.
enum class CoreNetWeights { kModel, kEma };

struct CoreNetStateDict {
  std::string where;  // "the file", "model_state_dict" or "ema_state_dict" (for messages)
  // CoreNet names (a DDP "module." prefix removed) and their tensor values, in stored order.
  std::vector<std::pair<std::string, const PyValue*>> tensors;
};

// The model state dict of a CoreNet .pt file. Errors name the file and say what it holds
// instead (e.g. a training checkpoint without model_state_dict, a value that is no tensor).
CoreNetStateDict FindCoreNetStateDict(const PyTorchCheckpoint& ckpt, CoreNetWeights which);

// The HF name of a CoreNet parameter ("layers.0.attn.qkv_proj.weight" ->
// "transformer.layers.0.attn.qkv_proj.weight", "classifier.weight" -> "lm_head.weight").
std::string HfNameOfCoreNet(const std::string& corenet_name);
// The inverse: the CoreNet name of an HF tensor name.
std::string CoreNetNameOfHf(const std::string& hf_name);

// The training state of a CoreNet training checkpoint (nullopt for a model file).
struct CoreNetTrainingState {
  int64_t iterations = 0;
  int64_t epoch = 0;
  std::optional<double> best_metric;
  bool has_optimizer = false, has_ema = false, has_gradient_scaler = false;
};
std::optional<CoreNetTrainingState> ReadCoreNetTrainingState(const PyTorchCheckpoint& ckpt);

// torch.optim.AdamW's state in a training checkpoint's optim_state_dict, per parameter: "state"
// maps a parameter index to {step, exp_avg, exp_avg_sq}; "param_groups" list the indices with the
// names CoreNet gives each group ("param_names", corenet/modeling/misc/common.py
// parameter_list), which is how an index finds its parameter.
struct CoreNetAdamWParam {
  std::string name;  // CoreNet name
  const PyValue* exp_avg = nullptr;
  const PyValue* exp_avg_sq = nullptr;
};
struct CoreNetAdamW {
  std::vector<CoreNetAdamWParam> params;  // those with a state (a step was taken)
  int64_t step = 0;                       // AdamW's step count (the largest of the parameters')
};
// Errors name the file and what is missing (no optim_state_dict, groups without param_names, a
// state without its moments).
CoreNetAdamW ReadCoreNetAdamW(const PyTorchCheckpoint& ckpt);

}  // namespace elm
