// LoRA fine-tuning (docs/openelm.md §6.10): the adapter's gradients against central differences
// (with and without dropout), the adapted training forward against the merged model in the
// inference Session, the adapter folder's round trip and its errors, the config keys, the adapter
// through the shared slab path (optimizer, checkpoint), bit-exact resume, and the command line end
// to end (elm train with LoRA, elm generate --lora, elm merge-lora).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/mmap_file.h"
#include "base/rng.h"
#include "config/hf_config.h"
#include "io/convert.h"
#include "io/safetensors.h"
#include "model/lora_adapter.h"
#include "model/session.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "train/init.h"
#include "train/lora.h"
#include "train/optimizer.h"
#include "train/train_config.h"
#include "train/train_model.h"
#include "train/trainer.h"

namespace elm {
namespace lora_test {
namespace fs = std::filesystem;

std::string Base() {
  return test::DataDir() + "/conformance/a_tiny_qknorm_tied";  // f32, tied, QK-norm, vocab 256
}
std::string Untied() {
  return test::DataDir() + "/conformance/b_tiny_noqknorm_untied";  // no QK-norm, untied head
}

LoraSettings AllTargets(int r, double alpha, double dropout) {
  LoraSettings s;
  s.rank = r;
  s.alpha = alpha;
  s.dropout = dropout;
  s.targets.fill(true);
  return s;
}

// Random adapter values: B ≠ 0 (unlike PEFT's init), so every tensor has a gradient.
void RandomAdapter(LoraParams& lp, uint64_t seed, float scale) {
  Rng rng(seed);
  for (float& v : lp.params) v = scale * (2.0f * rng.NextFloat() - 1.0f);
}

std::unique_ptr<TrainModel> LoraModel(const std::string& dir, const LoraSettings& s) {
  auto inference = Model::Load(dir);
  auto m = std::make_unique<TrainModel>(inference->config());
  LoadParams(m->params(), inference->store());
  m->EnableLora(s);
  return m;
}

// The message of the elm::Error `fn` throws ("" when it throws none).
template <typename Fn>
std::string ErrorOf(Fn fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Lora, GradientsMatchCentralDifferences) {
  for (const double dropout : {0.0, 0.25}) {
    const std::string folder = dropout > 0 ? Base() : Untied();
    SCOPED_TRACE("dropout " + std::to_string(dropout) + ", " + folder);
    auto m = LoraModel(folder, AllTargets(3, 6, dropout));
    LoraParams& lp = *m->lora();
    RandomAdapter(lp, 7, 0.3f);
    const int B = 2, T = 7, V = m->config().vocab_size;
    std::vector<int> ids(B * T), tg(B * T);
    for (int i = 0; i < B * T; ++i) {
      ids[i] = (i * 37 + 11) % V;
      tg[i] = (i * 53 + 5) % V;
    }
    ids[3] = ids[9];  // a repeated token: the embedding A column accumulates two rows
    m->set_lora_dropout(dropout > 0, /*key=*/1234);  // the same mask in every Forward below
    LossOptions lo;
    lo.z_loss_coef = 1e-4f;
    m->ZeroGrad();
    m->Forward(ids.data(), tg.data(), B, T, lo);
    m->Backward();
    EXPECT_TRUE(m->params().grads.empty());  // the base has no gradient slab at all
    const std::vector<float> g(lp.grads.begin(), lp.grads.end());
    auto loss = [&] { return m->Forward(ids.data(), tg.data(), B, T, lo).loss; };

    // Per tensor: the derivative along d = ĝ + r̂ (the gradient's direction plus a random one),
    // numerically vs g·d. A wrong gradient (wrong scale, transposed, missing a term) fails it.
    Rng rng(99);
    for (const LoraTensor& t : lp.layout().tensors()) {
      std::vector<double> d(t.numel);
      double gn = 0, rn = 0;
      std::vector<double> r(t.numel);
      for (size_t i = 0; i < t.numel; ++i) {
        r[i] = 2.0 * rng.NextDouble() - 1.0;
        gn += static_cast<double>(g[t.offset + i]) * g[t.offset + i];
        rn += r[i] * r[i];
      }
      ASSERT_GT(gn, 0) << t.name << ": zero gradient";
      double analytic = 0;
      for (size_t i = 0; i < t.numel; ++i) {
        d[i] = g[t.offset + i] / std::sqrt(gn) + r[i] / std::sqrt(rn);
        analytic += d[i] * g[t.offset + i];
      }
      const double eps = 2e-3;
      std::vector<float> saved(lp.params.begin() + static_cast<std::ptrdiff_t>(t.offset),
                               lp.params.begin() + static_cast<std::ptrdiff_t>(t.offset + t.numel));
      for (size_t i = 0; i < t.numel; ++i)
        lp.params[t.offset + i] = static_cast<float>(saved[i] + eps * d[i]);
      const double lp_plus = loss();
      for (size_t i = 0; i < t.numel; ++i)
        lp.params[t.offset + i] = static_cast<float>(saved[i] - eps * d[i]);
      const double lp_minus = loss();
      std::copy(saved.begin(), saved.end(),
                lp.params.begin() + static_cast<std::ptrdiff_t>(t.offset));
      const double numeric = (lp_plus - lp_minus) / (2 * eps);
      EXPECT_NEAR(numeric, analytic, 2e-4 + 2e-3 * std::fabs(analytic)) << t.name;
    }
  }
}

// DoRA with dropout (PEFT 0.9: the correction term uses the dropped-out input): the magnitude
// gradients against central differences (n does not depend on m, so the numeric derivative is
// the detached one), and m = ‖W + s·B·A‖ makes the adapted forward equal plain LoRA's. The A and
// B gradients (n held constant) are checked against PyTorch by PosttrainParity.*.
TEST(Lora, DoraMagnitudeGradientsWithDropout) {
  LoraSettings s = AllTargets(3, 6, 0.25);
  s.dora = true;
  auto m = LoraModel(Base(), s);
  LoraParams& lp = *m->lora();
  RandomAdapter(lp, 11, 0.3f);
  const int B = 2, T = 7, V = m->config().vocab_size;
  std::vector<int> ids(B * T), tg(B * T);
  for (int i = 0; i < B * T; ++i) ids[i] = (i * 37 + 11) % V, tg[i] = (i * 53 + 5) % V;
  m->set_lora_dropout(true, /*key=*/77);
  auto loss = [&] { return m->Forward(ids.data(), tg.data(), B, T, {}).loss; };
  // m = ‖W + s·B·A‖: DoRA computes exactly what LoRA computes, dropout included only through
  // the LoRA branch and the correction term, so compare with the dropout off.
  m->set_lora_dropout(false);
  m->InitDoraMagnitudes();
  const double dora_at_norm = loss();
  LoraSettings plain = s;
  plain.dora = false;
  auto ref = LoraModel(Base(), plain);
  for (const LoraTensor& t : ref->lora()->layout().tensors()) {
    const LoraTensor* src = lp.layout().Get(t.layer, t.target, t.is_a);
    std::copy(lp.params.begin() + static_cast<std::ptrdiff_t>(src->offset),
              lp.params.begin() + static_cast<std::ptrdiff_t>(src->offset + src->numel),
              ref->lora()->params.begin() + static_cast<std::ptrdiff_t>(t.offset));
  }
  EXPECT_NEAR(dora_at_norm, ref->Forward(ids.data(), tg.data(), B, T, {}).loss, 1e-5);
  // Magnitudes away from the norm, dropout on.
  Rng rng(5);
  for (const LoraTensor& t : lp.layout().tensors())
    if (t.is_magnitude)
      for (size_t i = 0; i < t.numel; ++i)
        lp.params[t.offset + i] *= static_cast<float>(0.8 + 0.4 * rng.NextDouble());
  m->set_lora_dropout(true, 77);
  m->ZeroGrad();
  loss();
  m->Backward();
  const std::vector<float> g(lp.grads.begin(), lp.grads.end());
  int checked = 0;
  for (const LoraTensor& t : lp.layout().tensors()) {
    if (!t.is_magnitude) continue;
    for (size_t i : {size_t{0}, t.numel / 2, t.numel - 1}) {
      const float saved = lp.params[t.offset + i];
      const double eps = 1e-2;
      lp.params[t.offset + i] = static_cast<float>(saved + eps);
      const double up = loss();
      lp.params[t.offset + i] = static_cast<float>(saved - eps);
      const double down = loss();
      lp.params[t.offset + i] = saved;
      EXPECT_NEAR((up - down) / (2 * eps), g[t.offset + i],
                  2e-4 + 2e-3 * std::fabs(g[t.offset + i]))
          << t.name << "[" << i << "]";
      ++checked;
    }
  }
  EXPECT_GT(checked, 0);
}

TEST(Lora, MergedModelMatchesTheAdaptedTrainingForward) {
  for (const std::string& folder : {Base(), Untied()}) {
    SCOPED_TRACE(folder);
    const std::string dir = test::TempDir("lora_merge");
    auto m = LoraModel(folder, AllTargets(4, 8, 0.1));
    LoraParams& lp = *m->lora();
    RandomAdapter(lp, 11, 0.2f);
    const std::string adapter = dir + "/adapter";
    SaveLoraAdapter(adapter, lp.settings(), lp.layout(), lp.params.data());

    // Round trip: the same values, and the same bytes when written again.
    const LoraAdapter back = LoadLoraAdapter(adapter, m->config());
    ASSERT_EQ(back.weights.size(), lp.params.size());
    EXPECT_EQ(std::memcmp(back.weights.data(), lp.params.data(), lp.params.size() * 4), 0);
    EXPECT_EQ(back.settings.rank, 4);
    EXPECT_EQ(back.settings.alpha, 8);
    EXPECT_EQ(back.settings.dropout, 0.1);
    EXPECT_EQ(back.settings.targets, lp.settings().targets);
    SaveLoraAdapter(dir + "/again", back.settings, back.layout, back.weights.data());
    for (const char* f : {"/adapter_model.safetensors", "/adapter_config.json"})
      EXPECT_TRUE(ReadTextFile(adapter + f) == ReadTextFile(dir + "/again" + f)) << f;

    // elm merge-lora's library call: a complete, untied (the embedding is adapted) f32 folder.
    EXPECT_EQ(MergeLoraCheckpoint(folder, adapter, dir + "/merged", std::nullopt), DType::kF32);
    const auto merged = Model::Load(dir + "/merged");
    EXPECT_FALSE(merged->config().tied_embeddings);
    EXPECT_NE(ErrorOf([&] {
                MergeLoraCheckpoint(folder, adapter, dir + "/merged", DType::kF32);
              }).find("already exists"),
              std::string::npos);
    EXPECT_EQ(MergeLoraCheckpoint(folder, adapter, dir + "/bf16/", DType::kBF16), DType::kBF16);
    EXPECT_TRUE(fs::exists(dir + "/bf16/model.safetensors"));  // a trailing '/' names the folder
    EXPECT_EQ(Model::Load(dir + "/bf16")->weights_dtype(), "BF16");
    // The base as GGUF and as an MLX folder: the same parameters (train's init_from) and the
    // same merged weights.
    ConvertOptions co;
    co.to = "gguf";
    co.output = dir + "/base.gguf";
    ConvertModel(OpenModelSource(folder), co);
    co.to = "mlx";
    co.output = dir + "/base_mlx";
    ConvertModel(OpenModelSource(folder), co);
    ParamSet want(m->config());
    LoadParams(want, TensorStore(folder));
    for (const std::string& other : {co.output, dir + "/base.gguf"}) {
      SCOPED_TRACE(other);
      ParamSet got(m->config());
      LoadParams(got, OpenModelSource(other));
      EXPECT_TRUE(got.params == want.params);
      EXPECT_EQ(MergeLoraCheckpoint(other, adapter, other + "_merged", std::nullopt), DType::kF32);
      EXPECT_TRUE(ReadTextFile(other + "_merged/model.safetensors") ==
                  ReadTextFile(dir + "/merged/model.safetensors"));
    }
    LoadOptions lo;
    lo.lora = adapter;
    const auto applied = Model::Load(folder, lo);
    const auto base = Model::Load(folder);

    const int B = 2, T = 9, V = m->config().vocab_size;
    std::vector<int> ids(B * T), tg(B * T, 0);
    for (int i = 0; i < B * T; ++i) ids[i] = (i * 37 + 11) % V;
    m->set_lora_dropout(false);
    m->Forward(ids.data(), tg.data(), B, T, {});
    for (int b = 0; b < B; ++b) {
      const std::vector<int> row(ids.begin() + b * T, ids.begin() + (b + 1) * T);
      const auto lm = test::AllLogits(merged, row);
      const auto la = test::AllLogits(applied, row);
      const auto lb = test::AllLogits(base, row);
      EXPECT_LE(test::MaxAbsDiff(lm.data(), m->logits() + b * T * V, lm.size()), 1e-4) << b;
      EXPECT_EQ(lm, la) << "--lora at load and merge-lora differ, row " << b;
      EXPECT_GT(test::MaxAbsDiff(lm.data(), lb.data(), lm.size()), 1e-2)
          << "the adapter is a no-op";
    }
    fs::remove_all(dir);
  }
}

// The adapter is a TrainSlab like the full model: its table is the layout's (decay on every
// tensor, the norm in layout order), and the one optimizer and checkpoint path serve it.
TEST(Lora, AdapterTrainsThroughTheSharedSlabPath) {
  auto m = LoraModel(Base(), AllTargets(2, 4, 0));
  LoraParams& lp = *m->lora();
  EXPECT_EQ(&m->trainable(), static_cast<TrainSlab*>(&lp));
  const auto& layout = lp.layout().tensors();
  ASSERT_EQ(lp.tensors().size(), layout.size());
  for (size_t k = 0; k < layout.size(); ++k) {
    EXPECT_EQ(lp.tensors()[k].spec.name, layout[k].name);
    EXPECT_EQ(lp.tensors()[k].offset, layout[k].offset);
    EXPECT_TRUE(lp.tensors()[k].decay);
    EXPECT_EQ(lp.norm_order()[k], k);
  }
  RandomAdapter(lp, 3, 0.3f);
  Rng rng(4);
  for (float& g : lp.grads) g = 2.0f * rng.NextFloat() - 1.0f;
  std::vector<float> norms;
  for (const LoraTensor& t : layout) norms.push_back(TorchVectorNorm(&lp.grads[t.offset], t.numel));
  const double norm = GlobalGradNorm(lp);
  EXPECT_EQ(norm, TorchVectorNorm(norms.data(), norms.size()));
  ClipGradients(lp, norm, norm / 2);
  const SlabFloats p0 = lp.params;
  const std::vector<float> g(lp.grads.begin(), lp.grads.end());
  AdamWParams hp;
  hp.weight_decay = 0.5;
  AdamWUpdate(lp, hp, 1e-2, 1);
  const AdamWStep step(hp, 1e-2, 1);
  for (size_t i = 0; i < lp.size(); ++i) {
    float p = p0[i], mi = 0, vi = 0;
    step.Update(p, g[i], mi, vi, /*weight_decay=*/true);
    ASSERT_EQ(p, lp.params[i]) << i;
  }

  // A checkpoint of the adapter reads back bit for bit; a full run's checkpoint is refused.
  const std::string dir = test::TempDir("lora_slab");
  TrainerState st;
  st.step = 1;
  const std::string ckpt = SaveCheckpoint(dir, lp, st, "");
  LoraParams back(m->config(), lp.settings());
  EXPECT_EQ(LoadCheckpoint(ckpt, back).step, 1);
  EXPECT_EQ(back.params, lp.params);
  EXPECT_EQ(back.m, lp.m);
  EXPECT_EQ(back.v, lp.v);
  ParamSet full(m->config());
  full.AllocateTrainingState();
  st.step = 2;
  const std::string full_ckpt = SaveCheckpoint(dir, full, st, "");
  EXPECT_NE(ErrorOf([&] { LoadCheckpoint(full_ckpt, back); }).find("not a LoRA checkpoint"),
            std::string::npos);
  fs::remove_all(dir);
}

TEST(Lora, BadAdapterFoldersAreClearErrors) {
  const std::string dir = test::TempDir("lora_bad");
  const ModelConfig cfg = Model::Load(Base())->config();
  LoraSettings s = AllTargets(4, 8, 0);
  s.targets[static_cast<size_t>(LoraTarget::kEmbeddings)] = false;
  const LoraLayout layout(cfg, s);
  std::vector<float> w(layout.size(), 0.5f);
  auto write = [&](const std::string& name, int skip, int transpose, int rank_in_config) {
    const std::string d = dir + "/" + name;
    LoraSettings sc = s;
    sc.rank = rank_in_config;
    SaveLoraAdapter(d, sc, layout, w.data());
    std::vector<TensorToWrite> ts;
    for (size_t k = 0; k < layout.tensors().size(); ++k) {
      const LoraTensor& t = layout.tensors()[k];
      if (static_cast<int>(k) == skip) continue;
      TensorToWrite x{t.name, DType::kF32, t.shape, w.data() + t.offset};
      if (static_cast<int>(k) == transpose) x.shape = {t.shape[1], t.shape[0]};
      ts.push_back(x);
    }
    WriteSafetensors(d + "/adapter_model.safetensors", ts);
    return d;
  };
  EXPECT_NO_THROW(LoadLoraAdapter(write("good", -1, -1, 4), cfg));
  const std::string& qkv_b = layout.tensors()[1].name;
  std::string e = ErrorOf([&] { LoadLoraAdapter(write("missing", 1, -1, 4), cfg); });
  EXPECT_NE(e.find("missing tensor '" + qkv_b + "'"), std::string::npos) << e;
  EXPECT_NE(e.find("adapter_model.safetensors"), std::string::npos) << e;
  e = ErrorOf([&] { LoadLoraAdapter(write("shape", -1, 1, 4), cfg); });
  EXPECT_NE(e.find("tensor '" + qkv_b + "' has shape"), std::string::npos) << e;
  e = ErrorOf([&] { LoadLoraAdapter(write("rank", -1, -1, 8), cfg); });
  EXPECT_NE(e.find("r = 8"), std::string::npos) << e;
  // A module the model does not have (layer 7 of a 2-layer model).
  {
    const std::string d = write("layer", -1, -1, 4);
    std::vector<TensorToWrite> ts;
    for (const LoraTensor& t : layout.tensors())
      ts.push_back({t.name, DType::kF32, t.shape, w.data() + t.offset});
    ts.push_back({"base_model.model.transformer.layers.7.attn.qkv_proj.lora_A.weight", DType::kF32,
                  layout.tensors()[0].shape, w.data()});
    WriteSafetensors(d + "/adapter_model.safetensors", ts);
    e = ErrorOf([&] { LoadLoraAdapter(d, cfg); });
    EXPECT_NE(e.find("layers.7.attn.qkv_proj"), std::string::npos) << e;
  }
  fs::remove(dir + "/good/adapter_config.json");
  e = ErrorOf([&] { LoadLoraAdapter(dir + "/good", cfg); });
  EXPECT_NE(e.find("no adapter_config.json"), std::string::npos) << e;
  LoadOptions lo;
  lo.lora = dir + "/nowhere";
  e = ErrorOf([&] { Model::Load(Base(), lo); });
  EXPECT_NE(e.find(dir + "/nowhere"), std::string::npos) << e;
  fs::remove_all(dir);
}

TEST(Lora, FakeQuantizedBaseLiesOnTheGrid) {
  const auto m = Model::Load(Base());
  ParamSet ps(m->config());
  LoadParams(ps, m->store());
  const SlabFloats before = ps.params;
  FakeQuantizeBase(ps, DType::kQ8_0);
  const SlabFloats once = ps.params;
  FakeQuantizeBase(ps, DType::kQ8_0);
  EXPECT_EQ(ps.params, once);  // already on the grid
  const ParamTensor* norm = ps.Find("transformer.norm.weight");
  const ParamTensor* qkv = ps.Find("transformer.layers.0.attn.qkv_proj.weight");
  EXPECT_EQ(std::memcmp(before.data() + norm->offset, once.data() + norm->offset, norm->numel * 4),
            0);  // norms untouched
  const float d =
      test::MaxAbsDiff(before.data() + qkv->offset, once.data() + qkv->offset, qkv->numel);
  EXPECT_GT(d, 0.0f);
  EXPECT_LT(d, 0.05f);
}

// The LoRA block of apple/corenet's projects/openelm/peft_configs/openelm_lora_270M.yaml, in
// flow style, with rank `r` in its first entry.
std::string CoreNetLora(const std::string& r, const std::string& second_regex = ".*proj_\\d.*") {
  return "model.lora={use_lora: true, config: ["
         "{regex: '.*token_embedding.*', module_type: embedding, params: {adapter_name: lora, r: " +
         r +
         ", lora_alpha: 32, lora_dropout: 0.1, init_lora_weights: true, use_rslora: false, "
         "use_dora: false}}, "
         "{regex: '" +
         second_regex +
         "', module_type: linear, params: {r: 32, lora_alpha: 32, lora_dropout: 0.1}}]}";
}

TEST(Lora, CoreNetConfigKeys) {
  const std::string dir = test::TempDir("lora_cfg");
  const std::string yaml = test::TinyTrainYaml(dir, 2, 2, 2);
  const std::string from = "elm.init_from=" + dir + "/base";
  TrainConfig c = ParseTrainConfig(yaml, "t.yaml", {CoreNetLora("32"), from});
  EXPECT_TRUE(c.lora.enabled());
  EXPECT_EQ(c.lora.rank, 32);
  EXPECT_EQ(c.lora.alpha, 32);
  EXPECT_EQ(c.lora.dropout, 0.1);
  EXPECT_FLOAT_EQ(c.lora.scaling(), 1.0f);
  LoraSettings rs = c.lora;
  rs.rslora = true;
  EXPECT_FLOAT_EQ(rs.scaling(), 32.0f / std::sqrt(32.0f));  // alpha / √r
  EXPECT_TRUE(c.lora.has(LoraTarget::kEmbeddings));
  EXPECT_TRUE(c.lora.has(LoraTarget::kProj1));
  EXPECT_TRUE(c.lora.has(LoraTarget::kProj2));
  EXPECT_FALSE(c.lora.has(LoraTarget::kQkv));  // '.*proj_\d.*' is not qkv_proj
  EXPECT_FALSE(c.lora.has(LoraTarget::kOut));
  EXPECT_TRUE(c.unknown_keys.empty());
  c = ParseTrainConfig(yaml, "t.yaml", {CoreNetLora("32", ".*(qkv|out)_proj.*"), from});
  EXPECT_TRUE(c.lora.has(LoraTarget::kQkv) && c.lora.has(LoraTarget::kOut));
  EXPECT_FALSE(c.lora.has(LoraTarget::kProj1));
  EXPECT_FALSE(ParseTrainConfig(yaml, "t.yaml").lora.enabled());

  auto error = [&](std::vector<std::string> set) {
    return ErrorOf([&] { ParseTrainConfig(yaml, "t.yaml", set); });
  };
  std::string e = error({CoreNetLora("abc"), from});
  EXPECT_NE(e.find("t.yaml: key 'model.lora.config[0].params.r' must be an integer"),
            std::string::npos)
      << e;
  e = error({CoreNetLora("16"), from});
  EXPECT_NE(e.find("one r, lora_alpha"), std::string::npos) << e;
  e = error({CoreNetLora("32", ".*nothing.*"), from});
  EXPECT_NE(e.find("selects none"), std::string::npos) << e;
  e = error({CoreNetLora("32", "layers.0.attn.qkv_proj"), from});
  EXPECT_NE(e.find("in 1 of 2 layers"), std::string::npos) << e;
  e = error({CoreNetLora("32"), from, "elm.lora_base_weights=q5"});
  EXPECT_NE(e.find("'elm.lora_base_weights' must be q8_0, q4_0, bf16 or f16"), std::string::npos)
      << e;
  e = error({"elm.lora_base_weights=q8_0"});
  EXPECT_NE(e.find("needs model.lora.use_lora"), std::string::npos) << e;
  EXPECT_EQ(
      *ParseTrainConfig(yaml, "t.yaml", {CoreNetLora("32"), from, "elm.lora_base_weights=q4_0"})
           .lora_base_weights,
      DType::kQ4_0);
  e = error({CoreNetLora("32")});
  EXPECT_NE(e.find("elm.init_from"), std::string::npos) << e;
  fs::remove_all(dir);
}

// The example config: CoreNet's PEFT layout, every key known, and the shipped model's shape (so
// elm.init_from: models/openelm-shakespeare loads).
TEST(Lora, ExampleConfigMatchesTheShippedModel) {
  const std::string root = ELM_SOURCE_DIR;
  const TrainConfig c = LoadTrainConfig(root + "/configs/openelm_shakespeare_lora.yaml");
  EXPECT_TRUE(c.unknown_keys.empty()) << c.unknown_keys.front();
  for (bool t : c.lora.targets) EXPECT_TRUE(t);
  EXPECT_EQ(c.lora.rank, 8);
  EXPECT_EQ(c.adamw.weight_decay, 0);
  const ModelConfig shipped = LoadHfConfig(root + "/" + c.init_from + "/config.json");
  EXPECT_EQ(ConfigToHfJson(shipped).dump(), ConfigToHfJson(c.model).dump());
}

class LoraRun : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::TempDir("lora_run");
    yaml_ = dir_ + "/tiny.yaml";
    std::ofstream(yaml_) << test::TinyTrainYaml(dir_, /*save_every=*/3, /*val_batches=*/2,
                                                /*keep_last_checkpoints=*/0);
    // The frozen base: the tiny config's model, randomly initialized.
    ParamSet ps(LoadTrainConfig(yaml_).model);
    InitParams(ps, 5);
    fs::create_directories(dir_ + "/base");
    WriteModelFolder(dir_ + "/base", ps, DType::kF32);
  }
  void TearDown() override { fs::remove_all(dir_); }
  TrainResult Train(const std::string& label, std::vector<std::string> set,
                    const std::string& resume = "") {
    set.push_back("common.run_label=" + label);
    set.push_back("elm.init_from=" + dir_ + "/base");
    set.push_back(
        "model.lora={use_lora: true, config: [{regex: '.*layers.*', module_type: linear, params: "
        "{r: 2, "
        "lora_alpha: 4, lora_dropout: 0.2}}, {regex: 'token_embeddings', module_type: "
        "embedding, params: {r: 2, lora_alpha: 4, lora_dropout: 0.2}}]}");
    TrainOptions o;
    o.resume = resume;
    o.verbose = false;
    return RunTraining(LoadTrainConfig(yaml_, set), o);
  }
  std::string dir_, yaml_;
};

TEST_F(LoraRun, ResumeWithDropoutIsBitExact) {
  const TrainResult straight = Train("straight", {});
  EXPECT_EQ(straight.steps, 6);
  EXPECT_LT(straight.final_loss, straight.first_loss);
  const TrainResult half = Train("resumed", {"elm.max_steps=3"});
  EXPECT_EQ(half.steps, 3);
  const TrainResult rest = Train("resumed", {}, dir_ + "/results/resumed");
  EXPECT_EQ(rest.first_step, 3);
  const std::string a = straight.checkpoint, b = rest.checkpoint;
  for (const char* f : {"/adapter_model.safetensors", "/optimizer.safetensors",
                        "/trainer_state.json", "/adapter_config.json"})
    EXPECT_TRUE(ReadTextFile(a + f) == ReadTextFile(b + f)) << f;
  EXPECT_FALSE(fs::exists(a + "/model.safetensors"));  // adapters only, the base stays put
  // A bf16-rounded base (elm.lora_base_weights) trains too; Q8_0 needs 32-column blocks, which
  // this tiny model's out_proj does not have: the error names the tensor.
  const TrainResult bf16 = Train("bf16", {"elm.lora_base_weights=bf16", "elm.max_steps=2"});
  EXPECT_EQ(bf16.steps, 2);
  EXPECT_NE(bf16.final_loss, straight.final_loss);
  std::string e = ErrorOf([&] { Train("q8", {"elm.lora_base_weights=q8_0"}); });
  EXPECT_NE(e.find("elm.lora_base_weights Q8_0: tensor 'transformer.layers.0.attn.out_proj"),
            std::string::npos)
      << e;
  // A full-training resume of a LoRA checkpoint is refused with a reason.
  ParamSet ps(LoadTrainConfig(yaml_).model);
  e = ErrorOf([&] { LoadCheckpoint(a, ps); });
  EXPECT_NE(e.find("LoRA checkpoint"), std::string::npos) << e;
}

// The "done when": a LoRA fine-tune of a small model on a text file changes its greedy
// generations, and merging keeps them.
TEST(LoraCli, FineTuneGenerateAndMerge) {
  const std::string dir = test::TempDir("lora_cli");
  const std::string corpus =
      ReadTextFile(std::string(ELM_SOURCE_DIR) + "/data/corpus/tinyshakespeare.txt");
  std::ofstream(dir + "/corpus.txt") << corpus.substr(0, 4000);
  const std::string model = std::string(ELM_SOURCE_DIR) + "/models/tiny-random-32k";
  std::ofstream(dir + "/lora.yaml")
      << "common: {results_loc: \"" << dir << "/results\", run_label: lora, seed: 1}\n"
      << "dataset:\n  train_batch_size0: 4\n  language_modeling:\n    sequence_length: 32\n"
      << "    general_lm: {train_data_info: [{file_name: \"" << dir << "/corpus.txt\"}]}\n"
      << "optim: {weight_decay: 0}\n"
      << "scheduler: {name: fixed, max_iterations: 20, fixed: {lr: 0.01}}\n"
      << "model:\n  freeze_modules: ['.*base_layer.*', '.*norm.*']\n"
      << "  language_modeling:\n    general_gpt: {num_transformer_layers: 2, model_dim: 128, "
      << "head_dim: 32, num_gqa_groups: 2, ffn_dim_divisor: 32, max_context_length: 128}\n"
      << "  lora:\n    use_lora: true\n    config:\n"
      << "      - {regex: '.*(qkv_proj|out_proj|proj_\\d).*', module_type: linear,\n"
      << "         params: {r: 4, lora_alpha: 8, lora_dropout: 0.1}}\n"
      << "elm: {init_from: \"" << model << "\"}\n";
  std::string out, err;
  ASSERT_EQ(test::RunElm("train --config " + dir + "/lora.yaml", &out, &err), 0) << out << err;
  EXPECT_NE(err.find("LoRA: r 4"), std::string::npos) << err;
  const std::string adapter = dir + "/results/lora/checkpoints/step_00000020";
  ASSERT_TRUE(fs::exists(adapter + "/adapter_config.json"));
  const auto bytes = fs::file_size(adapter + "/adapter_model.safetensors");
  EXPECT_LT(bytes * 20, fs::file_size(model + "/model.safetensors")) << bytes;

  const std::string gen = " --prompt 'ROMEO:' -n 12 --temperature 0 --output-ids";
  std::string base_ids, lora_ids, merged_ids;
  ASSERT_EQ(test::RunElm("generate --model " + model + gen, &base_ids), 0);
  ASSERT_EQ(test::RunElm("generate --model " + model + " --lora " + adapter + gen, &lora_ids, &err),
            0)
      << err;
  EXPECT_NE(base_ids, lora_ids);
  ASSERT_EQ(test::RunElm("merge-lora --model " + model + " --lora " + adapter + " --output " + dir +
                             "/merged",
                         &out, &err),
            0)
      << out << err;
  ASSERT_EQ(test::RunElm("generate --model " + dir + "/merged" + gen, &merged_ids), 0);
  EXPECT_EQ(merged_ids, lora_ids);
  // A wrong adapter path fails with the path in the message.
  EXPECT_NE(
      test::RunElm("generate --model " + model + " --lora " + dir + "/nope" + gen, &out, &err), 0);
  EXPECT_NE(err.find(dir + "/nope"), std::string::npos) << err;
  fs::remove_all(dir);
}

}  // namespace lora_test
}  // namespace elm

namespace elm {
namespace lora_test {
// `elm train` with CoreNet's use_dora on the linear entry (README-peft.md): a PEFT DoRA adapter
// whose first step is the base model (m starts at ‖W‖), applied by --lora as merge-lora merges it.
TEST(LoraCli, CoreNetDoraTrainsAndApplies) {
  const std::string dir = test::TempDir("dora_cli");
  const std::string corpus =
      ReadTextFile(std::string(ELM_SOURCE_DIR) + "/data/corpus/tinyshakespeare.txt");
  std::ofstream(dir + "/corpus.txt") << corpus.substr(0, 4000);
  const std::string model = std::string(ELM_SOURCE_DIR) + "/models/tiny-random-32k";
  std::ofstream(dir + "/dora.yaml")
      << "common: {results_loc: \"" << dir << "/results\", run_label: dora, seed: 1}\n"
      << "dataset:\n  train_batch_size0: 4\n  language_modeling:\n    sequence_length: 32\n"
      << "    general_lm: {train_data_info: [{file_name: \"" << dir << "/corpus.txt\"}]}\n"
      << "optim: {weight_decay: 0}\n"
      << "scheduler: {name: fixed, max_iterations: 6, fixed: {lr: 0.01}}\n"
      << "model:\n  language_modeling:\n    general_gpt: {num_transformer_layers: 2, "
      << "model_dim: 128, head_dim: 32, num_gqa_groups: 2, ffn_dim_divisor: 32, "
      << "max_context_length: 128}\n"
      << "  lora:\n    use_lora: true\n    config:\n"
      << "      - {regex: '.*(qkv_proj|out_proj|proj_\\d).*', module_type: linear,\n"
      << "         params: {r: 4, lora_alpha: 8, lora_dropout: 0.1, use_dora: true}}\n"
      << "elm: {init_from: \"" << model << "\"}\n";
  std::string out, err;
  ASSERT_EQ(test::RunElm("train --config " + dir + "/dora.yaml", &out, &err), 0) << out << err;
  const std::string adapter = dir + "/results/dora/checkpoints/step_00000006";
  EXPECT_NE(ReadTextFile(adapter + "/adapter_config.json").find("\"use_dora\": true"),
            std::string::npos);
  const std::string gen = " --prompt 'ROMEO:' -n 8 --temperature 0 --output-ids";
  std::string lora_ids, merged_ids;
  ASSERT_EQ(test::RunElm("generate --model " + model + " --lora " + adapter + gen, &lora_ids, &err),
            0)
      << err;
  ASSERT_EQ(test::RunElm("merge-lora --model " + model + " --lora " + adapter + " --output " + dir +
                             "/merged",
                         &out, &err),
            0)
      << out << err;
  ASSERT_EQ(test::RunElm("generate --model " + dir + "/merged" + gen, &merged_ids), 0);
  EXPECT_EQ(lora_ids, merged_ids);
}
}  // namespace lora_test
}  // namespace elm
