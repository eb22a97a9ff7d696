// Training parity with PyTorch (llm.c's test_gpt2 pattern): for every folder of training vectors,
// the step-0 loss and every parameter's gradient, then a 10-step AdamW trajectory with global-norm
// clipping (and a z-loss run where present), against Apple's HF model run in PyTorch f32. Folders
// are discovered at run time from $ELM_TRAIN_CONFORMANCE_DIR (colon-separated), by default
// tests/data/train plus ../shared/conformance/train when present. Tolerances and definitions:
// shared/conformance/train/README.md.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/mmap_file.h"
#include "config/hf_config.h"
#include "io/safetensors.h"
#include "model/session.h"
#include "test_util.h"
#include "train/optimizer.h"
#include "train/train_model.h"

namespace elm {
namespace train_parity_test {
namespace fs = std::filesystem;
using nlohmann::json;

struct Folder {
  std::string path, name, checkpoint;
  json vectors;
};

std::vector<Folder> Discover() {
  std::vector<Folder> out;
  for (const std::string& d : test::VectorFolders("ELM_TRAIN_CONFORMANCE_DIR", "train", "train",
                                                  "train_vectors.json", "train parity")) {
    Folder f{d, fs::path(d).filename().string(), "",
             json::parse(ReadTextFile(d + "/train_vectors.json"))};
    f.checkpoint = test::FindInitialCheckpoint(d, f.vectors.value("initial_weights", ""),
                                               f.vectors.value("config_name", ""));
    out.push_back(std::move(f));
  }
  return out;
}

struct Batch {
  int B = 0, T = 0;
  std::vector<int> inputs, labels;
};
Batch ReadBatch(const json& v) {
  Batch b;
  b.B = v["batch"]["B"].get<int>();
  b.T = v["batch"]["T"].get<int>();
  for (const auto& row : v["batch"]["input_ids"])
    for (const auto& id : row) b.inputs.push_back(id.get<int>());
  for (const auto& row : v["batch"]["labels"])
    for (const auto& id : row) b.labels.push_back(id.get<int>());
  return b;
}

double RelErr(double got, double want) {
  return std::fabs(got - want) / std::fabs(want);
}

// Max over tensors of max|p − ref|.
double MaxParamError(const ParamSet& ps, const std::string& file) {
  const TensorStore ref(file);
  std::vector<float> slab(ps.size());
  LoadSlab(ps, ref, "", slab.data());
  return test::MaxAbsDiff(ps.params.data(), slab.data(), ps.size());
}

// Runs `steps` AdamW steps on the fixed batch, checking each step's loss and gradient norm.
void RunTrajectory(const Folder& f, const Batch& b, const json& traj, const char* loss_key,
                   float z_coef, const std::string& final_params, double final_loss,
                   const char* label) {
  SCOPED_TRACE(std::string(label));
  TrainModel model(LoadHfConfig(f.checkpoint + "/config.json"));
  LoadParams(model.params(), TensorStore(f.checkpoint));
  model.params().AllocateTrainingState();
  const json& opt = f.vectors["optimizer"];
  AdamWParams hp;
  hp.beta1 = opt["betas"][0].get<double>();
  hp.beta2 = opt["betas"][1].get<double>();
  hp.eps = opt["eps"].get<double>();
  hp.weight_decay = 0.1;
  const double lr = opt["lr"].get<double>();
  LossOptions lo;
  lo.z_loss_coef = z_coef;
  double max_loss_err = 0, max_norm_err = 0;
  for (size_t k = 0; k < traj.size(); ++k) {
    model.ZeroGrad();
    const LossValue L = model.Forward(b.inputs.data(), b.labels.data(), b.B, b.T, lo);
    model.Backward();
    const double norm = GlobalGradNorm(model.params());
    const double le = RelErr(L.loss, traj[k][loss_key].get<double>());
    const double ne = RelErr(norm, traj[k]["grad_norm_preclip"].get<double>());
    EXPECT_LE(le, 1e-4) << "step " << k << " loss " << L.loss;
    EXPECT_LE(ne, 1e-4) << "step " << k << " grad norm " << norm;
    if (std::getenv("ELM_TRAIN_PARITY_VERBOSE") != nullptr)  // per-step numbers, for debugging
      std::printf("  step %zu: loss %.9g (ref %.9g), grad norm %.9g (ref %.9g)\n", k, L.loss,
                  traj[k][loss_key].get<double>(), norm,
                  traj[k]["grad_norm_preclip"].get<double>());
    max_loss_err = std::max(max_loss_err, le);
    max_norm_err = std::max(max_norm_err, ne);
    ClipGradients(model.params(), norm, 1.0);
    AdamWUpdate(model.params(), hp, lr, static_cast<int64_t>(k) + 1);
  }
  const LossValue L = model.Forward(b.inputs.data(), b.labels.data(), b.B, b.T, lo);
  const double fe = RelErr(L.loss, final_loss);
  EXPECT_LE(fe, 1e-4) << "loss after " << traj.size() << " steps";
  std::printf(
      "[train parity] %s %s: max rel loss err %.2e, max rel grad-norm err %.2e, "
      "final loss rel err %.2e",
      f.name.c_str(), label, max_loss_err, max_norm_err, fe);
  if (fs::exists(final_params)) {
    const double pe = MaxParamError(model.params(), final_params);
    EXPECT_LE(pe, 1e-4) << "params after the trajectory vs " << final_params;
    std::printf(", max weight err %.2e", pe);
  }
  std::printf("\n");
}

TEST(TrainParity, EveryFolder) {
  const auto folders = Discover();
  ASSERT_FALSE(folders.empty()) << "no training vectors found (tests/data/train is in the repo)";
  for (const Folder& f : folders) {
    SCOPED_TRACE(f.path);
    ASSERT_FALSE(f.checkpoint.empty()) << f.name << ": initial checkpoint not found";
    const Batch b = ReadBatch(f.vectors);

    // Step 0: loss, logits and every gradient.
    TrainModel model(LoadHfConfig(f.checkpoint + "/config.json"));
    LoadParams(model.params(), TensorStore(f.checkpoint));
    model.params().AllocateTrainingState();
    const LossValue L = model.Forward(b.inputs.data(), b.labels.data(), b.B, b.T, {});
    const double want0 = f.vectors["step0"]["loss"].get<double>();
    EXPECT_LE(RelErr(L.loss, want0), 1e-5) << "step-0 loss " << L.loss << " vs " << want0;
    double logit_err = -1;
    if (fs::exists(f.path + "/logits_step0.bin")) {
      const size_t n = static_cast<size_t>(b.B) * b.T * model.config().vocab_size;
      const auto ref = test::ReadFloats(f.path + "/logits_step0.bin", 0, n);
      logit_err = test::MaxAbsDiff(model.logits(), ref.data(), n);
      EXPECT_LE(logit_err, 1e-4);
    }
    model.Backward();
    const TensorStore grads(f.path + "/grads_step0.safetensors");
    std::vector<float> ref(model.params().size());
    LoadSlab(model.params(), grads, "", ref.data());
    double worst = 0;
    std::string worst_name;
    for (const ParamTensor& t : model.params().tensors()) {
      const float* g = model.params().grads.data() + t.offset;
      const float* r = ref.data() + t.offset;
      float rmax = 0;
      for (size_t i = 0; i < t.numel; ++i) rmax = std::max(rmax, std::fabs(r[i]));
      const double rel = test::MaxAbsDiff(g, r, t.numel) / std::max(rmax, 1e-30f);
      EXPECT_LE(rel, 1e-4) << t.spec.name;
      if (rel > worst) worst = rel, worst_name = t.spec.name;
    }
    const double norm = GlobalGradNorm(model.params());
    const double norm_err =
        RelErr(norm, f.vectors["trajectory"][0]["grad_norm_preclip"].get<double>());
    EXPECT_LE(norm_err, 1e-4);
    std::printf(
        "[train parity] %s: step-0 loss %.6f (rel err %.2e), logits max abs err %s, "
        "max rel grad err %.2e (%s), grad-norm rel err %.2e\n",
        f.name.c_str(), L.loss, RelErr(L.loss, want0),
        logit_err < 0 ? "n/a" : std::to_string(logit_err).c_str(), worst, worst_name.c_str(),
        norm_err);

    RunTrajectory(f, b, f.vectors["trajectory"], "loss", 0.0f,
                  f.path + "/params_step10.safetensors",
                  f.vectors["loss_after_step10"].get<double>(), "cross-entropy run");
    if (f.vectors.contains("zloss_trajectory"))
      RunTrajectory(f, b, f.vectors["zloss_trajectory"], "loss_zloss", 1e-4f,
                    f.path + "/params_step10_zloss.safetensors",
                    f.vectors["zloss_after_step10"]["loss"].get<double>(), "z-loss run");
  }
}

// The training forward computes what the inference forward computes.
TEST(TrainParity, TrainForwardMatchesSession) {
  const std::string dir = test::DataDir() + "/conformance/a_tiny_qknorm_tied";
  auto inference = Model::Load(dir);
  TrainModel model(inference->config());
  LoadParams(model.params(), inference->store());
  const int B = 2, T = 9;
  std::vector<int> ids(B * T), targets(B * T, 0);
  for (int i = 0; i < B * T; ++i) ids[i] = (i * 37 + 11) % model.config().vocab_size;
  model.Forward(ids.data(), targets.data(), B, T, {});
  const int V = model.config().vocab_size;
  for (int b = 0; b < B; ++b) {
    Session s(inference);
    std::vector<float> logits;
    ForwardOptions fo;
    fo.all_logits = true;
    s.Forward(std::span<const int>(ids.data() + b * T, T), logits, fo);
    EXPECT_LE(test::MaxAbsDiff(logits.data(), model.logits() + b * T * V, logits.size()), 2e-5)
        << "row " << b;
  }
}

}  // namespace train_parity_test
}  // namespace elm
