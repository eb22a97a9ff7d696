// Post-training parity with PyTorch (shared/conformance/posttrain/README.md): SFT with prompt
// masking (loss and every gradient), the preference losses of TRL's DPOTrainer (log-probs, loss,
// metrics and every gradient per case, and a 5-step AdamW trajectory), and LoRA (logits, loss and
// adapter gradients), for every folder of post-training vectors: $ELM_POSTTRAIN_CONFORMANCE_DIR
// (colon-separated), by default tests/data/posttrain plus ../shared/conformance/posttrain when
// present. Each test prints each folder's name and worst error.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/mmap_file.h"
#include "config/hf_config.h"
#include "data/chat_dataset.h"
#include "io/safetensors.h"
#include "model/lora_adapter.h"
#include "model/model.h"
#include "test_util.h"
#include "train/optimizer.h"
#include "train/preference_loss.h"
#include "train/train_model.h"

namespace elm {
namespace posttrain_parity_test {
namespace fs = std::filesystem;
using nlohmann::json;

struct Folder {
  std::string path, name, checkpoint;
  json v;
};

std::vector<Folder> Discover() {
  std::vector<Folder> out;
  for (const std::string& d :
       test::VectorFolders("ELM_POSTTRAIN_CONFORMANCE_DIR", "posttrain", "posttrain",
                           "posttrain_vectors.json", "posttrain parity")) {
    Folder f{d, fs::path(d).filename().string(), "",
             json::parse(ReadTextFile(d + "/posttrain_vectors.json"))};
    f.checkpoint = test::FindInitialCheckpoint(d, f.v.value("initial_weights", ""),
                                               f.v.value("config_name", ""));
    if (f.checkpoint.empty()) {
      std::printf("[posttrain parity] %s: its initial checkpoint is not found: skipped\n",
                  f.name.c_str());
      continue;
    }
    out.push_back(std::move(f));
  }
  return out;
}

double RelErr(double got, double want) {
  return std::fabs(got - want) / std::fabs(want);
}

std::unique_ptr<TrainModel> LoadModel(const std::string& dir) {
  auto m = std::make_unique<TrainModel>(LoadHfConfig(dir + "/config.json"));
  LoadParams(m->params(), TensorStore(dir));
  return m;
}

// Worst over tensors of max|g − ref| / max|ref| (the README's gradient tolerance is 1e-4).
double GradError(const TrainSlab& slab, const std::string& file) {
  const TensorStore ref(file);
  std::vector<float> want(slab.size());
  LoadSlab(slab, ref, "", want.data());
  double worst = 0;
  for (const SlabTensor& t : slab.tensors()) {
    double err = 0, scale = 0;
    for (size_t i = t.offset; i < t.offset + t.numel; ++i) {
      err = std::max(err, static_cast<double>(std::fabs(slab.grads[i] - want[i])));
      scale = std::max(scale, static_cast<double>(std::fabs(want[i])));
    }
    EXPECT_LE(err, 1e-4 * scale) << t.spec.name << " in " << file;
    if (scale > 0) worst = std::max(worst, err / scale);
  }
  return worst;
}

std::vector<int> Ids(const json& j) {
  std::vector<int> v;
  for (const auto& x : j) v.push_back(x.get<int>());
  return v;
}
std::vector<double> Doubles(const json& j) {
  std::vector<double> v;
  for (const auto& x : j) v.push_back(x.get<double>());
  return v;
}

TokenBatch SftBatch(const Folder& f) {
  std::vector<SftExample> rows;
  for (const auto& p : f.v["sft"]["pairs"]) {
    SftExample ex;
    ex.ids = Ids(p["prompt"]);
    ex.scored.assign(ex.ids.size(), 0);
    const std::vector<int> c = Ids(p["completion"]);
    ex.ids.insert(ex.ids.end(), c.begin(), c.end());
    ex.scored.resize(ex.ids.size(), 1);
    rows.push_back(std::move(ex));
  }
  return MakeSftBatch(rows, f.v["special_ids"]["pad"].get<int>());
}

// The reference's [B, L] input_ids / labels against elm's shifted [B, L − 1] inputs / targets.
void ExpectSameBatch(const TokenBatch& b, const json& ids, const json& labels) {
  ASSERT_EQ(static_cast<size_t>(b.B), ids.size());
  ASSERT_EQ(static_cast<size_t>(b.T) + 1, ids[0].size());
  for (int r = 0; r < b.B; ++r)
    for (int t = 0; t < b.T; ++t) {
      EXPECT_EQ(b.inputs[static_cast<size_t>(r * b.T + t)], ids[r][t].get<int>()) << r << "," << t;
      EXPECT_EQ(b.targets[static_cast<size_t>(r * b.T + t)], labels[r][t + 1].get<int>())
          << r << "," << t;
    }
}

TEST(PosttrainParity, SftMaskedLossAndGradients) {
  const auto folders = Discover();
  if (folders.empty()) GTEST_SKIP() << "no post-training vectors";
  for (const Folder& f : folders) {
    SCOPED_TRACE(f.name);
    const json& sft = f.v["sft"];
    const TokenBatch b = SftBatch(f);
    ExpectSameBatch(b, sft["batch"]["input_ids"], sft["batch"]["labels"]);
    auto m = LoadModel(f.checkpoint);
    m->params().AllocateTrainingState();
    const LossValue L = m->Forward(b.inputs.data(), b.targets.data(), b.B, b.T, {});
    EXPECT_EQ(L.n_valid, sft["num_scored_tokens"].get<int64_t>());
    const double loss_err = RelErr(L.loss, sft["loss"].get<double>());
    EXPECT_LE(loss_err, 1e-5);
    m->Backward();
    const std::string gf = sft["grads_file"].get<std::string>();  // "name: description"
    const double g = GradError(m->params(), f.path + "/" + gf.substr(0, gf.find(':')));
    std::printf("[posttrain parity] %s SFT: loss rel err %.2g, worst grad err %.2g of max|g|\n",
                f.name.c_str(), loss_err, g);
  }
}

// LoRA (and DoRA where the folder has it): logits of each sequence alone, the SFT loss through the
// adapted model, and the adapter's gradients.
TEST(PosttrainParity, LoraLogitsLossAndGradients) {
  const auto folders = Discover();
  if (folders.empty()) GTEST_SKIP() << "no post-training vectors";
  for (const Folder& f : folders) {
    for (const char* kind : {"lora", "dora"}) {
      if (!f.v.contains(kind)) continue;
      SCOPED_TRACE(f.name + " " + kind);
      const json& lv = f.v[kind];
      const std::string dir = f.path + "/" + kind;
      auto m = LoadModel(f.checkpoint);
      const LoraAdapter ad = LoadLoraAdapter(dir, m->config());
      m->EnableLora(ad.settings);
      ASSERT_EQ(m->lora()->size(), ad.weights.size());
      std::copy(ad.weights.begin(), ad.weights.end(), m->lora()->params.begin());
      const int64_t V = m->config().vocab_size;
      float worst_logit = 0;
      for (const auto& s : lv["sequences"]) {
        const std::vector<int> tok = Ids(s["tokens"]);
        const std::vector<int> ignore(tok.size(), -100);
        m->Forward(tok.data(), ignore.data(), 1, static_cast<int>(tok.size()), {});
        const std::vector<float> want =
            test::ReadFloats(dir + "/logits.bin", s["logits_offset_bytes"].get<uint64_t>(),
                             tok.size() * static_cast<uint64_t>(V));
        const float d = test::MaxAbsDiff(m->logits(), want.data(), want.size());
        EXPECT_LE(d, 1e-4f);
        worst_logit = std::max(worst_logit, d);
      }
      const TokenBatch b = SftBatch(f);
      m->ZeroGrad();
      const LossValue L = m->Forward(b.inputs.data(), b.targets.data(), b.B, b.T, {});
      const double loss_err = RelErr(L.loss, lv["loss"].get<double>());
      EXPECT_LE(loss_err, 1e-5);
      m->Backward();
      const double g = GradError(*m->lora(), dir + "/grads.safetensors");
      double worst_norm = 0;
      if (fs::exists(dir + "/dora_weight_norm.safetensors")) {
        // PEFT's dora_init value ‖W + s·B·A‖ (the detached norm of the forward).
        SlabFloats mag(m->lora()->params);
        m->InitDoraMagnitudes();
        const TensorStore norms(dir + "/dora_weight_norm.safetensors");
        for (const LoraTensor& t : m->lora()->layout().tensors()) {
          if (!t.is_magnitude) continue;
          std::string name = t.name;
          name.replace(name.rfind("lora_magnitude_vector"), 21, "dora_weight_norm");
          const TensorView* v = norms.Find(name);
          ASSERT_NE(v, nullptr) << name;
          std::vector<float> want(t.numel);
          ToF32(*v->dtype, v->data, want.data(), t.numel);
          for (size_t i = 0; i < t.numel; ++i)
            worst_norm = std::max(worst_norm, RelErr(m->lora()->params[t.offset + i], want[i]));
        }
        EXPECT_LE(worst_norm, 1e-5);
        m->lora()->params = mag;
      }
      std::printf(
          "[posttrain parity] %s %s: logits max err %.2g, loss rel err %.2g, worst grad err %.2g, "
          "norm rel err %.2g\n",
          f.name.c_str(), kind, worst_logit, loss_err, g, worst_norm);
    }
  }
}

struct PrefBatch {
  TokenBatch b;
  int N = 0;
};
PrefBatch PreferenceBatch(const Folder& f) {
  std::vector<PreferenceExample> pairs;
  for (const auto& t : f.v["preference"]["triples"])
    pairs.push_back({Ids(t["prompt"]), Ids(t["chosen"]), Ids(t["rejected"])});
  PrefBatch p{MakePreferenceBatch(pairs, f.v["special_ids"]["pad"].get<int>()),
              static_cast<int>(pairs.size())};
  return p;
}

void ExpectLogps(const std::vector<double>& got, const json& logps, const char* who,
                 const char* red, double* worst) {
  const size_t N = got.size() / 2;
  const std::vector<double> c = Doubles(logps[std::string(who) + "_chosen_" + red]);
  const std::vector<double> r = Doubles(logps[std::string(who) + "_rejected_" + red]);
  for (size_t i = 0; i < N; ++i) {
    EXPECT_LE(RelErr(got[i], c[i]), 1e-5) << who << " chosen " << red << " " << i;
    EXPECT_LE(RelErr(got[N + i], r[i]), 1e-5) << who << " rejected " << red << " " << i;
    *worst = std::max({*worst, RelErr(got[i], c[i]), RelErr(got[N + i], r[i])});
  }
}

TEST(PosttrainParity, PreferenceLossesMetricsAndGradients) {
  const auto folders = Discover();
  if (folders.empty()) GTEST_SKIP() << "no post-training vectors";
  for (const Folder& f : folders) {
    SCOPED_TRACE(f.name);
    const json& pv = f.v["preference"];
    const PrefBatch p = PreferenceBatch(f);
    ExpectSameBatch(p.b, pv["concatenated_batch"]["input_ids"], pv["concatenated_batch"]["labels"]);
    auto ref = LoadModel(f.path + "/pref_reference");
    double worst_logp = 0, worst_loss = 0, worst_grad = 0, worst_logits = 0;
    std::vector<double> ref_lp[2];
    for (int avg = 0; avg < 2; ++avg) {
      ref_lp[avg] =
          PreferenceLogProbs(*ref, p.b.inputs.data(), p.b.targets.data(), p.b.B, p.b.T, avg != 0);
      ExpectLogps(ref_lp[avg], pv["logps"], "reference", avg ? "avg" : "sum", &worst_logp);
    }
    for (const auto& c : pv["cases"]) {
      SCOPED_TRACE(c["name"].get<std::string>());
      PreferenceLossOptions opt;
      opt.type = ParsePreferenceLossType(c["loss_type"].get<std::string>(), "loss_type");
      opt.beta = c["beta"].get<double>();
      opt.label_smoothing = c["label_smoothing"].get<double>();
      auto m = LoadModel(f.checkpoint);
      m->params().AllocateTrainingState();
      const bool avg = opt.average_log_probs();
      const std::vector<double> pol =
          PreferenceLogProbs(*m, p.b.inputs.data(), p.b.targets.data(), p.b.B, p.b.T, avg);
      ExpectLogps(pol, pv["logps"], "policy", avg ? "avg" : "sum", &worst_logp);
      const PreferenceLoss L = PreferenceForwardBackward(*m, p.b.inputs.data(), p.b.targets.data(),
                                                         p.b.B, p.b.T, ref_lp[avg ? 1 : 0], opt);
      EXPECT_LE(RelErr(L.loss, c["loss"].get<double>()), 1e-5);
      worst_loss = std::max(worst_loss, RelErr(L.loss, c["loss"].get<double>()));
      const std::vector<double> dh = Doubles(c["dloss_dh_per_pair"]);
      for (size_t i = 0; i < dh.size(); ++i)
        EXPECT_NEAR(L.dloss_dchosen[i], dh[i], 1e-5 * std::fabs(dh[i]) + 1e-9);
      double max_logp = 0;
      for (double x : pol) max_logp = std::max(max_logp, std::fabs(x));
      const json& mt = c["metrics"];
      const double rtol = opt.beta * 1e-5 * max_logp;
      EXPECT_NEAR(L.metrics.rewards_chosen, mt["rewards/chosen"].get<double>(), rtol);
      EXPECT_NEAR(L.metrics.rewards_rejected, mt["rewards/rejected"].get<double>(), rtol);
      EXPECT_NEAR(L.metrics.rewards_margins, mt["rewards/margins"].get<double>(), rtol);
      EXPECT_EQ(static_cast<float>(L.metrics.rewards_accuracies),
                mt["rewards/accuracies"].get<float>());
      EXPECT_LE(RelErr(L.metrics.logps_chosen, mt["logps/chosen"].get<double>()), 1e-5);
      EXPECT_LE(RelErr(L.metrics.logps_rejected, mt["logps/rejected"].get<double>()), 1e-5);
      // elm's logits/* average the rows that predict a scored token (the reference's
      // logits_scored_rows/*; TRL's own also average the prompt and pad rows of its padded batch).
      if (mt.contains("logits_scored_rows/chosen")) {
        EXPECT_NEAR(L.metrics.logits_chosen, mt["logits_scored_rows/chosen"].get<double>(), 1e-6);
        EXPECT_NEAR(L.metrics.logits_rejected, mt["logits_scored_rows/rejected"].get<double>(),
                    1e-6);
        worst_logits = std::max(
            {worst_logits,
             std::fabs(L.metrics.logits_chosen - mt["logits_scored_rows/chosen"].get<double>()),
             std::fabs(L.metrics.logits_rejected -
                       mt["logits_scored_rows/rejected"].get<double>())});
      }
      worst_grad = std::max(
          worst_grad, GradError(m->params(), f.path + "/" + c["grads_file"].get<std::string>()));
    }
    std::printf(
        "[posttrain parity] %s preference (%zu cases): log-prob rel err %.2g, loss rel err %.2g, "
        "worst grad err %.2g of max|g|, logits/* abs err %.2g\n",
        f.name.c_str(), pv["cases"].size(), worst_logp, worst_loss, worst_grad, worst_logits);
  }
}

TEST(PosttrainParity, PreferenceTrajectory) {
  const auto folders = Discover();
  if (folders.empty()) GTEST_SKIP() << "no post-training vectors";
  for (const Folder& f : folders) {
    SCOPED_TRACE(f.name);
    const json& pv = f.v["preference"];
    const json& tr = pv["trajectory"];
    const PrefBatch p = PreferenceBatch(f);
    const json* cs = nullptr;
    for (const auto& c : pv["cases"])
      if (c["name"] == tr["case"]) cs = &c;
    ASSERT_NE(cs, nullptr);
    PreferenceLossOptions opt;
    opt.type = ParsePreferenceLossType((*cs)["loss_type"].get<std::string>(), "loss_type");
    opt.beta = (*cs)["beta"].get<double>();
    opt.label_smoothing = (*cs)["label_smoothing"].get<double>();
    auto ref = LoadModel(f.path + "/pref_reference");
    const std::vector<double> ref_lp = PreferenceLogProbs(
        *ref, p.b.inputs.data(), p.b.targets.data(), p.b.B, p.b.T, opt.average_log_probs());
    auto m = LoadModel(f.checkpoint);
    m->params().AllocateTrainingState();
    AdamWParams hp;
    hp.beta1 = tr["optimizer"]["betas"][0].get<double>();
    hp.beta2 = tr["optimizer"]["betas"][1].get<double>();
    hp.eps = tr["optimizer"]["eps"].get<double>();
    hp.weight_decay = tr["optimizer"]["weight_decay"].get<double>();
    const double lr = tr["optimizer"]["lr"].get<double>();
    double worst = 0;
    for (size_t k = 0; k < tr["steps"].size(); ++k) {
      m->ZeroGrad();
      const PreferenceLoss L = PreferenceForwardBackward(*m, p.b.inputs.data(), p.b.targets.data(),
                                                         p.b.B, p.b.T, ref_lp, opt);
      const double e = RelErr(L.loss, tr["steps"][k]["loss"].get<double>());
      EXPECT_LE(e, 1e-4) << "step " << k;
      const double ne =
          RelErr(GlobalGradNorm(m->params()), tr["steps"][k]["grad_norm"].get<double>());
      EXPECT_LE(ne, 1e-4) << "step " << k;
      worst = std::max({worst, e, ne});
      AdamWUpdate(m->params(), hp, lr, static_cast<int64_t>(k) + 1);
    }
    const std::vector<double> last =
        PreferenceLogProbs(*m, p.b.inputs.data(), p.b.targets.data(), p.b.B, p.b.T, false);
    const size_t N = last.size() / 2;
    const PreferenceLoss L5 =
        ComputePreferenceLoss(std::span(last).first(N), std::span(last).subspan(N),
                              std::span(ref_lp).first(N), std::span(ref_lp).subspan(N), opt);
    EXPECT_LE(RelErr(L5.loss, tr["loss_after_step5"].get<double>()), 1e-4);
    const TensorStore want(f.path + "/" + tr["params_file"].get<std::string>());
    std::vector<float> w(m->params().size());
    LoadSlab(m->params(), want, "", w.data());
    size_t beyond = 0;
    float maxd = 0;
    for (size_t i = 0; i < w.size(); ++i) {
      const float d = std::fabs(m->params().params[i] - w[i]);
      maxd = std::max(maxd, d);
      beyond += d > 1e-5f;
    }
    EXPECT_LE(maxd, 1e-3f);
    EXPECT_LE(static_cast<double>(beyond), 1e-4 * static_cast<double>(w.size()));
    std::printf(
        "[posttrain parity] %s trajectory (%zu steps): loss/grad-norm rel err %.2g, params after "
        "step 5 max err %.2g (%zu beyond 1e-5)\n",
        f.name.c_str(), tr["steps"].size(), worst, maxd, beyond);
  }
}

// The adapters applied at load (`--lora`, LoadOptions::lora: W merged, DoRA's rows rescaled to
// m/‖W + s·B·A‖) give the reference logits in the inference session, and `elm merge-lora` writes
// the same weights.
TEST(PosttrainParity, AdaptersAppliedAtLoadMatchTheReferenceLogits) {
  const auto folders = Discover();
  if (folders.empty()) GTEST_SKIP() << "no post-training vectors";
  for (const Folder& f : folders) {
    for (const char* kind : {"lora", "dora"}) {
      if (!f.v.contains(kind)) continue;
      SCOPED_TRACE(f.name + " " + kind);
      const std::string dir = f.path + "/" + kind;
      LoadOptions lo;
      lo.lora = dir;
      const auto model = Model::Load(f.checkpoint, lo);
      const int64_t V = model->config().vocab_size;
      float worst = 0;
      for (const auto& s : f.v[kind]["sequences"]) {
        const std::vector<int> tok = Ids(s["tokens"]);
        const std::vector<float> got = test::AllLogits(model, tok);
        const std::vector<float> want =
            test::ReadFloats(dir + "/logits.bin", s["logits_offset_bytes"].get<uint64_t>(),
                             tok.size() * static_cast<uint64_t>(V));
        ASSERT_EQ(got.size(), want.size());
        worst = std::max(worst, test::MaxAbsDiff(got.data(), want.data(), want.size()));
      }
      EXPECT_LE(worst, 1e-4f);
      std::printf("[posttrain parity] %s %s applied at load: logits max err %.2g\n", f.name.c_str(),
                  kind, worst);
    }
  }
}

// For a LoRA policy the reference is the base with the adapter switched off: the same log-probs
// as the base model itself, and a backward after it leaves the adapter's gradients alone.
TEST(PosttrainParity, LoraReferenceIsTheBaseWithTheAdapterOff) {
  const auto folders = Discover();
  if (folders.empty()) GTEST_SKIP() << "no post-training vectors";
  for (const Folder& f : folders) {
    if (!f.v.contains("lora")) continue;
    SCOPED_TRACE(f.name);
    const PrefBatch p = PreferenceBatch(f);
    auto m = LoadModel(f.checkpoint);
    const LoraAdapter ad = LoadLoraAdapter(f.path + "/lora", m->config());
    m->EnableLora(ad.settings);
    std::copy(ad.weights.begin(), ad.weights.end(), m->lora()->params.begin());
    m->set_lora_enabled(false);
    const std::vector<double> off =
        PreferenceLogProbs(*m, p.b.inputs.data(), p.b.targets.data(), p.b.B, p.b.T, false);
    double worst = 0;
    ExpectLogps(off, f.v["preference"]["logps"], "policy", "sum", &worst);
    m->set_lora_enabled(true);
    const std::vector<double> on =
        PreferenceLogProbs(*m, p.b.inputs.data(), p.b.targets.data(), p.b.B, p.b.T, false);
    EXPECT_NE(on, off);  // the adapter is nonzero: switching it on changes the log-probs
  }
}

}  // namespace posttrain_parity_test
}  // namespace elm
