#include "io/corenet_checkpoint.h"

#include "base/error.h"

namespace elm {
namespace {

bool IsTrainingCheckpoint(const PyTorchCheckpoint& c) {
  return c.pickle().Get(c.root(), "model_state_dict") != nullptr;
}

}  // namespace

CoreNetStateDict FindCoreNetStateDict(const PyTorchCheckpoint& ckpt, CoreNetWeights which) {
  const Pickle& p = ckpt.pickle();
  const PyValue& root = ckpt.root();
  if (root.kind != PyValue::Kind::kDict)
    Fail(ckpt.origin(), ": holds a ", p.Describe(p.root_index()),
         ", not a state dict or a CoreNet training checkpoint");
  CoreNetStateDict out;
  const PyValue* sd = &root;
  out.where = "the file";
  if (IsTrainingCheckpoint(ckpt)) {
    out.where = which == CoreNetWeights::kEma ? "ema_state_dict" : "model_state_dict";
    sd = p.Get(root, out.where);
    if (sd == nullptr)
      Fail(ckpt.origin(), ": a training checkpoint without '", out.where,
           "' (it was saved without EMA; read model_state_dict instead)");
    if (sd->kind != PyValue::Kind::kDict) Fail(ckpt.origin(), ": '", out.where, "' is not a dict");
  } else if (which == CoreNetWeights::kEma) {
    Fail(ckpt.origin(),
         ": EMA weights asked for, but this is a model file, not a training "
         "checkpoint (CoreNet saves the EMA model as its own file, checkpoint_ema_*.pt)");
  }
  for (const auto& [k, v] : sd->dict) {
    const PyValue& key = p.at(k);
    if (key.kind != PyValue::Kind::kStr)
      Fail(ckpt.origin(), ": ", out.where, " has a key that is not a string (", p.Describe(k), ")");
    const PyValue& val = p.at(v);
    if (val.kind != PyValue::Kind::kTensor)
      Fail(ckpt.origin(), ": ", out.where, "['", key.str, "'] is a ", p.Describe(v),
           ", not a tensor (is this a model state dict?)");
    std::string name = key.str;
    if (name.rfind("module.", 0) == 0) name = name.substr(7);  // saved from a DDP wrapper
    out.tensors.emplace_back(name, &val);
  }
  if (out.tensors.empty()) Fail(ckpt.origin(), ": ", out.where, " holds no tensors");
  return out;
}

std::string HfNameOfCoreNet(const std::string& name) {
  if (name.rfind("classifier.", 0) == 0) return "lm_head." + name.substr(11);
  return "transformer." + name;
}

std::string CoreNetNameOfHf(const std::string& name) {
  if (name.rfind("lm_head.", 0) == 0) return "classifier." + name.substr(8);
  if (name.rfind("transformer.", 0) == 0) return name.substr(12);
  return name;
}

std::optional<CoreNetTrainingState> ReadCoreNetTrainingState(const PyTorchCheckpoint& ckpt) {
  if (!IsTrainingCheckpoint(ckpt)) return std::nullopt;
  const Pickle& p = ckpt.pickle();
  const PyValue& root = ckpt.root();
  CoreNetTrainingState s;
  auto int_of = [&](const char* key) -> int64_t {
    const PyValue* v = p.Get(root, key);
    if (v == nullptr) return 0;
    if (v->kind != PyValue::Kind::kInt) Fail(ckpt.origin(), ": '", key, "' is not an integer");
    return v->i;
  };
  s.iterations = int_of("iterations");
  s.epoch = int_of("epoch");
  if (const PyValue* b = p.Get(root, "best_metric")) {
    if (b->kind == PyValue::Kind::kFloat) s.best_metric = b->f;
    if (b->kind == PyValue::Kind::kInt) s.best_metric = static_cast<double>(b->i);
  }
  s.has_optimizer = p.Get(root, "optim_state_dict") != nullptr;
  s.has_ema = p.Get(root, "ema_state_dict") != nullptr;
  s.has_gradient_scaler = p.Get(root, "gradient_scaler_state_dict") != nullptr;
  return s;
}

}  // namespace elm
