#include "io/corenet_checkpoint.h"

#include <algorithm>
#include <cstring>
#include <map>

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

CoreNetAdamW ReadCoreNetAdamW(const PyTorchCheckpoint& ckpt) {
  const Pickle& p = ckpt.pickle();
  const std::string& o = ckpt.origin();
  const PyValue* optim = p.Get(ckpt.root(), "optim_state_dict");
  if (optim == nullptr) Fail(o, ": no optim_state_dict (not a CoreNet training checkpoint)");
  const PyValue* state = p.Get(*optim, "state");
  const PyValue* groups = p.Get(*optim, "param_groups");
  if (state == nullptr || state->kind != PyValue::Kind::kDict || groups == nullptr ||
      groups->kind != PyValue::Kind::kList)
    Fail(o, ": optim_state_dict is not an optimizer state (no 'state' and 'param_groups')");
  std::map<int64_t, std::string> names;  // parameter index -> CoreNet name
  for (size_t g : groups->items) {
    const PyValue* ids = p.Get(p.at(g), "params");
    const PyValue* pn = p.Get(p.at(g), "param_names");
    if (pn == nullptr)
      Fail(o,
           ": optim_state_dict's param groups have no 'param_names' (CoreNet writes them), "
           "so its moments cannot be matched to parameters");
    if (ids == nullptr || ids->kind != PyValue::Kind::kList || pn->kind != PyValue::Kind::kList ||
        ids->items.size() != pn->items.size())
      Fail(o, ": optim_state_dict has a param group whose 'params' and 'param_names' differ");
    for (size_t k = 0; k < ids->items.size(); ++k) {
      const PyValue& id = p.at(ids->items[k]);
      const PyValue& name = p.at(pn->items[k]);
      if (id.kind != PyValue::Kind::kInt || name.kind != PyValue::Kind::kStr)
        Fail(o, ": optim_state_dict has a param group entry that is not an index and a name");
      names[id.i] = name.str.rfind("module.", 0) == 0 ? name.str.substr(7) : name.str;
    }
  }
  CoreNetAdamW out;
  for (const auto& [k, v] : state->dict) {
    const PyValue& key = p.at(k);
    if (key.kind != PyValue::Kind::kInt) Fail(o, ": optim_state_dict's state has a non-index key");
    auto it = names.find(key.i);
    if (it == names.end())
      Fail(o, ": optim_state_dict has a state for parameter ", key.i, ", which no group names");
    CoreNetAdamWParam prm;
    prm.name = it->second;
    const PyValue& st = p.at(v);
    prm.exp_avg = p.Get(st, "exp_avg");
    prm.exp_avg_sq = p.Get(st, "exp_avg_sq");
    const PyValue* step = p.Get(st, "step");
    if (prm.exp_avg == nullptr || prm.exp_avg_sq == nullptr || step == nullptr ||
        prm.exp_avg->kind != PyValue::Kind::kTensor ||
        prm.exp_avg_sq->kind != PyValue::Kind::kTensor)
      Fail(o, ": the AdamW state of '", prm.name, "' lacks step, exp_avg or exp_avg_sq tensors");
    // The step: a number (PyTorch < 1.12) or a scalar tensor (float32, or int64).
    int64_t n = 0;
    if (step->kind == PyValue::Kind::kInt) n = step->i;
    if (step->kind == PyValue::Kind::kFloat) n = static_cast<int64_t>(step->f);
    if (step->kind == PyValue::Kind::kTensor) {
      const TensorView sv = ckpt.View(*step, prm.name + " step");
      if (sv.numel() != 1) Fail(o, ": the AdamW step of '", prm.name, "' is not a scalar");
      if (sv.dtype_name == "F32") {
        float f;
        std::memcpy(&f, sv.data, 4);
        n = static_cast<int64_t>(f);
      } else if (sv.dtype_name == "F64") {
        double d;
        std::memcpy(&d, sv.data, 8);
        n = static_cast<int64_t>(d);
      } else if (sv.dtype_name == "I64") {
        std::memcpy(&n, sv.data, 8);
      } else {
        Fail(o, ": the AdamW step of '", prm.name, "' is stored as ", sv.dtype_name);
      }
    }
    out.step = std::max(out.step, n);
    out.params.push_back(prm);
  }
  return out;
}

}  // namespace elm
