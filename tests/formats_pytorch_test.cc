// PyTorch .pt checkpoints and CoreNet's layouts (docs/formats.md, "PyTorch .pt checkpoints" and
// "CoreNet checkpoints"): the fixtures in tests/data/pytorch were written by Debian's
// python3-torch (tests/tools/make_pytorch_fixtures.py) from the conformance checkpoints, and
// d_mid_* from a random model of a mid-sized, layer-wise scaled shape.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/dtype.h"
#include "base/error.h"
#include "base/mmap_file.h"
#include "config/hf_config.h"
#include "config/tensor_layout.h"
#include "io/convert.h"
#include "io/corenet_checkpoint.h"
#include "io/model_source.h"
#include "io/pytorch_checkpoint.h"
#include "io/pytorch_pickle.h"
#include "io/safetensors.h"
#include "io/zip_archive.h"
#include "model/model.h"
#include "test_util.h"

namespace elm {
namespace formats_pytorch_test {
namespace fs = std::filesystem;

std::string Pt(const std::string& name) {
  return test::DataDir() + "/pytorch/" + name;
}
std::string Conformance(const std::string& name) {
  return test::DataDir() + "/conformance/" + name;
}

// Every tensor of `sd` equals the conformance checkpoint's tensor of the same HF name, bit for
// bit (after rounding to `as` where the fixture stored a narrower type).
void ExpectTensorsEqualConformance(const PyTorchCheckpoint& ckpt, const CoreNetStateDict& sd,
                                   const std::string& folder, DType as = DType::kF32) {
  const TensorStore ref(Conformance(folder));
  size_t compared = 0;
  for (const auto& [name, value] : sd.tensors) {
    SCOPED_TRACE(name);
    const TensorView got = ckpt.View(*value, name);
    const TensorView* want = ref.Find(HfNameOfCoreNet(name));
    ASSERT_NE(want, nullptr);
    ASSERT_EQ(got.dtype, as);
    // The embedding may carry CoreNet's padding rows after the model's.
    ASSERT_GE(got.shape.at(0), want->shape.at(0));
    const auto n = static_cast<size_t>(want->numel());
    std::vector<uint8_t> expect(DTypeBytes(as, n));
    FromF32(as, static_cast<const float*>(want->data), expect.data(), n);
    EXPECT_EQ(std::memcmp(got.data, expect.data(), expect.size()), 0) << "differs";
    ++compared;
  }
  EXPECT_EQ(compared, ref.all().size() - (ref.Find("transformer.classifier.weight") ? 1 : 0));
}

TEST(PyTorchCheckpoint, ModelFileHoldsTheSavedTensorsBitForBit) {
  const PyTorchCheckpoint ckpt(Pt("a_tiny_corenet_f32.pt"));
  const CoreNetStateDict sd = FindCoreNetStateDict(ckpt, CoreNetWeights::kModel);
  EXPECT_EQ(sd.where, "the file");
  bool embedding = false;  // CoreNet's names, no "transformer."
  for (const auto& [n, v] : sd.tensors) embedding |= n == "token_embeddings.weight";
  EXPECT_TRUE(embedding);
  ExpectTensorsEqualConformance(ckpt, sd, "a_tiny_qknorm_tied");
  EXPECT_FALSE(ReadCoreNetTrainingState(ckpt).has_value());
}

TEST(PyTorchCheckpoint, ViewsOffsetsAndSharedStoragesReadAsTheirValues) {
  const PyTorchCheckpoint ckpt(Pt("a_tiny_corenet_views.pt"));
  const CoreNetStateDict sd = FindCoreNetStateDict(ckpt, CoreNetWeights::kModel);
  ExpectTensorsEqualConformance(ckpt, sd, "a_tiny_qknorm_tied");
  std::map<std::string, const PyValue*> by;
  for (const auto& [n, v] : sd.tensors) by[n] = v;
  // A transposed-back matrix, a strided row slice and a column slice are gathered into copies;
  // an offset into a larger storage and the two halves of a shared one are read in place.
  EXPECT_GT(ckpt.CopyBytes(*by.at("layers.0.attn.qkv_proj.weight")), 0u);
  EXPECT_GT(ckpt.CopyBytes(*by.at("layers.1.attn.out_proj.weight")), 0u);
  EXPECT_GT(ckpt.CopyBytes(*by.at("layers.0.ffn.proj_2.weight")), 0u);
  EXPECT_EQ(ckpt.CopyBytes(*by.at("layers.1.ffn.proj_1.weight")), 0u);
  EXPECT_GT(by.at("layers.1.ffn.proj_1.weight")->tensor.offset, 0);
  const PyValue& q = *by.at("layers.0.attn.q_norm.weight");
  const PyValue& k = *by.at("layers.0.attn.k_norm.weight");
  EXPECT_EQ(ckpt.pickle().at(q.tensor.storage).storage.key,
            ckpt.pickle().at(k.tensor.storage).storage.key);
  EXPECT_EQ(k.tensor.offset, 16);
}

TEST(PyTorchCheckpoint, DdpPrefixIsDroppedAndClassifierIsTheLmHead) {
  const PyTorchCheckpoint ckpt(Pt("b_tiny_corenet_ddp_f32.pt"));
  const CoreNetStateDict sd = FindCoreNetStateDict(ckpt, CoreNetWeights::kModel);
  bool classifier = false;
  for (const auto& [n, v] : sd.tensors) classifier |= n == "classifier.weight";
  EXPECT_TRUE(classifier);
  EXPECT_EQ(HfNameOfCoreNet("classifier.weight"), "lm_head.weight");
  EXPECT_EQ(CoreNetNameOfHf("lm_head.weight"), "classifier.weight");
  EXPECT_EQ(CoreNetNameOfHf("transformer.norm.weight"), "norm.weight");
  ExpectTensorsEqualConformance(ckpt, sd, "b_tiny_noqknorm_untied");
}

TEST(PyTorchCheckpoint, TrainingCheckpointHasModelEmaOptimizerAndCounters) {
  const PyTorchCheckpoint ckpt(Pt("a_tiny_corenet_train_bf16.pt"));
  const auto state = ReadCoreNetTrainingState(ckpt);
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(state->iterations, 5000);
  EXPECT_EQ(state->epoch, 1);
  ASSERT_TRUE(state->best_metric.has_value());
  EXPECT_TRUE(std::isinf(*state->best_metric));
  EXPECT_TRUE(state->has_optimizer);
  EXPECT_TRUE(state->has_ema);
  EXPECT_TRUE(state->has_gradient_scaler);
  const CoreNetStateDict model = FindCoreNetStateDict(ckpt, CoreNetWeights::kModel);
  EXPECT_EQ(model.where, "model_state_dict");
  ExpectTensorsEqualConformance(ckpt, model, "a_tiny_qknorm_tied", DType::kBF16);
  const CoreNetStateDict ema = FindCoreNetStateDict(ckpt, CoreNetWeights::kEma);
  ExpectTensorsEqualConformance(ckpt, ema, "a_tiny_qknorm_tied");
  // AdamW's state: per parameter index, step and both moments, plus the two param groups.
  const Pickle& p = ckpt.pickle();
  const PyValue* optim = p.Get(ckpt.root(), "optim_state_dict");
  ASSERT_NE(optim, nullptr);
  const PyValue* st = p.Get(*optim, "state");
  ASSERT_NE(st, nullptr);
  ASSERT_EQ(st->dict.size(), model.tensors.size());
  const PyValue& first = p.at(st->dict.front().second);
  ASSERT_NE(p.Get(first, "exp_avg"), nullptr);
  EXPECT_EQ(p.Get(first, "exp_avg")->kind, PyValue::Kind::kTensor);
  EXPECT_EQ(p.Get(first, "exp_avg_sq")->kind, PyValue::Kind::kTensor);
  const PyValue* step = p.Get(first, "step");
  ASSERT_NE(step, nullptr);
  ASSERT_EQ(step->kind, PyValue::Kind::kTensor);  // torch >= 1.12 keeps the step as a tensor
  const TensorView sv = ckpt.View(*step, "step");
  EXPECT_TRUE(sv.shape.empty());
  float one = 0;
  std::memcpy(&one, sv.data, 4);
  EXPECT_EQ(one, 1.0f);
  EXPECT_EQ(p.Get(*optim, "param_groups")->items.size(), 2u);
  // The model file has no EMA of its own.
  EXPECT_THROW(
      FindCoreNetStateDict(PyTorchCheckpoint(Pt("a_tiny_corenet_f32.pt")), CoreNetWeights::kEma),
      Error);
}

// The model source opens a .pt with a config given apart; converting it gives the conformance
// checkpoint's tensors bit for bit and its logits exactly.
class PyTorchConvert : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = test::TempDir("pytorch"); }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

void ExpectSameTensors(const std::string& ref_dir, const std::string& got_dir) {
  const TensorStore a(ref_dir), b(got_dir);
  for (const TensorSpec& spec : ExpectedTensors(LoadHfConfig(ref_dir + "/config.json"))) {
    SCOPED_TRACE(spec.name);
    const TensorView& x = a.Get(spec.name);
    const TensorView& y = b.Get(spec.name);
    ASSERT_EQ(x.shape, y.shape);
    ASSERT_EQ(x.nbytes, y.nbytes);
    EXPECT_EQ(std::memcmp(x.data, y.data, x.nbytes), 0);
  }
}

TEST_F(PyTorchConvert, ConvertedWeightsAndLogitsEqualTheConformanceCheckpoint) {
  struct Case {
    const char* pt;
    const char* folder;
  };
  for (const Case c : {Case{"a_tiny_corenet_f32.pt", "a_tiny_qknorm_tied"},
                       Case{"a_tiny_corenet_views.pt", "a_tiny_qknorm_tied"},
                       Case{"b_tiny_corenet_ddp_f32.pt", "b_tiny_noqknorm_untied"}}) {
    SCOPED_TRACE(c.pt);
    SourceOptions so;
    so.config = LoadHfConfig(Conformance(c.folder) + "/config.json");
    so.config_json = ReadTextFile(Conformance(c.folder) + "/config.json");
    const ModelSource src = OpenModelSource(Pt(c.pt), so);
    EXPECT_EQ(src.format, "pytorch");
    ConvertOptions opt;
    opt.to = "hf";
    opt.output = dir_ + "/" + c.pt + "_hf";
    ConvertModel(src, opt);
    ExpectSameTensors(Conformance(c.folder), opt.output);
    EXPECT_EQ(ReadTextFile(opt.output + "/config.json"), so.config_json);
    const auto tokens = test::LongestSequenceTokens(Conformance(c.folder));
    const auto ref = test::AllLogits(Model::Load(Conformance(c.folder)), tokens);
    const auto got = test::AllLogits(Model::Load(opt.output), tokens);
    EXPECT_EQ(test::MaxAbsDiff(got.data(), ref.data(), ref.size()), 0.0f);
    // And Apple's reference logits of that sequence (conformance logits.bin), within the f32
    // tolerance of docs/numerics.md.
    const nlohmann::json vec =
        nlohmann::json::parse(ReadTextFile(Conformance(c.folder) + "/vectors.json"));
    for (const auto& seq : vec["sequences"]) {
      if (seq["tokens"].get<std::vector<int>>() != tokens) continue;
      const auto apple = test::ReadFloats(Conformance(c.folder) + "/logits.bin",
                                          seq["logits_offset_bytes"].get<uint64_t>(), got.size());
      float abs_max = 1.0f;
      for (float x : apple) abs_max = std::max(abs_max, std::fabs(x));
      EXPECT_LE(test::MaxAbsDiff(got.data(), apple.data(), apple.size()), 1e-4f * abs_max);
    }
  }
}

TEST_F(PyTorchConvert, TrainingCheckpointPaddedEmbeddingAndBf16) {
  SourceOptions so;
  so.config = LoadHfConfig(Conformance("a_tiny_qknorm_tied") + "/config.json");
  // model_state_dict: bf16, with 128 padding rows beyond the config's 256 (CoreNet's 32128).
  const ModelSource src = OpenModelSource(Pt("a_tiny_corenet_train_bf16.pt"), so);
  ASSERT_EQ(src.tensors.front().spec.name, "transformer.token_embeddings.weight");
  EXPECT_EQ(src.tensors.front().dtype, DType::kBF16);
  ConvertOptions opt;
  opt.to = "hf";
  opt.output = dir_ + "/train_hf";
  ConvertModel(src, opt);
  const TensorStore got(opt.output), ref(Conformance("a_tiny_qknorm_tied"));
  for (const auto& [name, v] : ref.all()) {
    SCOPED_TRACE(name);
    const TensorView& g = got.Get(name);
    ASSERT_EQ(g.dtype_name, "BF16");
    ASSERT_EQ(g.shape, v->shape);
    std::vector<uint16_t> want(static_cast<size_t>(v->numel()));
    FromF32(DType::kBF16, static_cast<const float*>(v->data), want.data(), want.size());
    EXPECT_EQ(std::memcmp(g.data, want.data(), g.nbytes), 0);
  }
  // --weights ema: the f32 EMA weights, which are the conformance checkpoint's.
  so.pt_weights = CoreNetWeights::kEma;
  const ModelSource ema = OpenModelSource(Pt("a_tiny_corenet_train_bf16.pt"), so);
  opt.output = dir_ + "/ema_hf";
  ConvertModel(ema, opt);
  ExpectSameTensors(Conformance("a_tiny_qknorm_tied"), opt.output);
}

TEST_F(PyTorchConvert, CliConvertsWithAYamlOrAConfigJson) {
  const std::string yaml = dir_ + "/tiny.yaml";
  std::ofstream(yaml) << "dataset: {language_modeling: {sequence_length: 64}}\n"
                         "model:\n  language_modeling:\n    name: general_gpt\n"
                         "    general_gpt: {num_transformer_layers: 2, model_dim: 64, head_dim: "
                         "16, num_gqa_groups: 2, qkv_multipliers: [0.5, 1.0], ffn_multipliers: "
                         "[0.5, 4.0], ffn_dim_divisor: 16, vocab_size: 256, max_context_length: "
                         "128}\n";
  std::string out, err;
  ASSERT_EQ(test::RunElm("convert --model " + Pt("a_tiny_corenet_f32.pt") + " --config " + yaml +
                             " --to gguf --output " + dir_ + "/a.gguf",
                         &out, &err),
            0)
      << err;
  ASSERT_EQ(test::RunElm("convert --model " + dir_ + "/a.gguf --to hf --output " + dir_ + "/a_hf",
                         &out, &err),
            0)
      << err;
  ExpectSameTensors(Conformance("a_tiny_qknorm_tied"), dir_ + "/a_hf");
  ASSERT_EQ(test::RunElm("convert --model " + Pt("a_tiny_corenet_views.pt") + " --config " +
                             Conformance("a_tiny_qknorm_tied") + "/config.json --to mlx --output " +
                             dir_ + "/a_mlx",
                         &out, &err),
            0)
      << err;
  ExpectSameTensors(Conformance("a_tiny_qknorm_tied"), dir_ + "/a_mlx");
  // Without --config, and --config for a source that has its own: clear errors.
  EXPECT_NE(test::RunElm("convert --model " + Pt("a_tiny_corenet_f32.pt") + " --to hf --output " +
                             dir_ + "/x",
                         &out, &err),
            0);
  EXPECT_NE(err.find("carries no model config"), std::string::npos) << err;
  EXPECT_NE(test::RunElm("convert --model " + Conformance("a_tiny_qknorm_tied") + " --config " +
                             yaml + " --to hf --output " + dir_ + "/y",
                         &out, &err),
            0);
  EXPECT_NE(err.find("apply to PyTorch .pt checkpoints only"), std::string::npos) << err;
  // A config whose shape differs from the checkpoint's names the tensor.
  EXPECT_NE(test::RunElm("convert --model " + Pt("a_tiny_corenet_f32.pt") + " --config " +
                             Conformance("b_tiny_noqknorm_untied") + "/config.json --to hf " +
                             "--output " + dir_ + "/z",
                         &out, &err),
            0);
  EXPECT_NE(err.find("a_tiny_corenet_f32.pt"), std::string::npos) << err;
}

// Every tensor of `folder` (converted from the .pt at `pt` with `weights`) is the stored tensor
// bit for bit, in its stored type; the embedding keeps the first rows of CoreNet's padded ones.
void ExpectConvertedAsStored(const std::string& pt, CoreNetWeights weights, DType stored,
                             const std::string& folder) {
  const PyTorchCheckpoint ckpt(pt);
  const CoreNetStateDict sd = FindCoreNetStateDict(ckpt, weights);
  const TensorStore got(folder);
  const auto expected = ExpectedTensors(LoadHfConfig(folder + "/config.json"));
  ASSERT_EQ(sd.tensors.size(), expected.size());
  ASSERT_EQ(got.all().size(), expected.size());
  for (const auto& [name, value] : sd.tensors) {
    SCOPED_TRACE(name);
    const TensorView want = ckpt.View(*value, name);
    const TensorView& g = got.Get(HfNameOfCoreNet(name));
    ASSERT_EQ(want.dtype, stored);
    ASSERT_EQ(g.dtype, stored);
    ASSERT_EQ(g.shape.size(), want.shape.size());
    ASSERT_LE(g.shape.at(0), want.shape.at(0));
    EXPECT_TRUE(std::equal(g.shape.begin() + 1, g.shape.end(), want.shape.begin() + 1));
    ASSERT_LE(g.nbytes, want.nbytes);
    EXPECT_EQ(std::memcmp(g.data, want.data, g.nbytes), 0) << "differs";
  }
}

// The mid shape (tests/data/pytorch/d_mid_*: 4 layers whose query heads, KV heads and FFN widths
// differ, a bf16 training checkpoint of a random model after three AdamW steps): `elm convert
// --config` its config.json gives the saved tensors, model (bf16) or EMA (f32), as stored.
TEST_F(PyTorchConvert, CliConvertsALayerWiseScaledTrainingCheckpointAsStored) {
  const std::string pt = Pt("d_mid_corenet_train_bf16.pt"), config = Pt("d_mid_config.json");
  const ModelConfig cfg = LoadHfConfig(config);
  ASSERT_EQ(cfg.n_layers, 4);
  std::vector<int> heads, kv_heads, ffn;
  for (const LayerConfig& l : cfg.layers) {
    heads.push_back(l.n_heads);
    kv_heads.push_back(l.n_kv_heads);
    ffn.push_back(l.ffn_dim);
  }
  EXPECT_EQ(heads, (std::vector<int>{2, 2, 4, 4}));
  EXPECT_EQ(kv_heads, (std::vector<int>{1, 1, 2, 2}));
  EXPECT_EQ(ffn, (std::vector<int>{32, 64, 96, 128}));
  const PyTorchCheckpoint ckpt(pt);
  const auto state = ReadCoreNetTrainingState(ckpt);
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(state->iterations, 15000);
  EXPECT_EQ(state->epoch, 2);
  EXPECT_TRUE(state->has_optimizer && state->has_ema && state->has_gradient_scaler);
  std::string out, err;
  ASSERT_EQ(test::RunElm("convert --model " + pt + " --config " + config + " --to hf --output " +
                             dir_ + "/mid_hf",
                         &out, &err),
            0)
      << err;
  ExpectConvertedAsStored(pt, CoreNetWeights::kModel, DType::kBF16, dir_ + "/mid_hf");
  EXPECT_EQ(ReadTextFile(dir_ + "/mid_hf/config.json"), ReadTextFile(config));
  ASSERT_EQ(test::RunElm("convert --model " + pt + " --config " + config +
                             " --weights ema --to hf --output " + dir_ + "/mid_ema",
                         &out, &err),
            0)
      << err;
  ExpectConvertedAsStored(pt, CoreNetWeights::kEma, DType::kF32, dir_ + "/mid_ema");
  // And the converted model runs: finite logits for a few tokens.
  const auto logits = test::AllLogits(Model::Load(dir_ + "/mid_hf"), {1, 17, 42, 200, 3});
  ASSERT_EQ(logits.size(), 5u * 256u);
  for (float x : logits) ASSERT_TRUE(std::isfinite(x));
}

std::string ErrorOf(const std::string& path) {
  try {
    const PyTorchCheckpoint ckpt(path);
    (void)FindCoreNetStateDict(ckpt, CoreNetWeights::kModel);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(PyTorchCheckpoint, HostileAndMalformedFilesGetClearErrors) {
  std::string e = ErrorOf(Pt("bad_os_system.pt"));
  EXPECT_NE(e.find("the global 'posix.system'"), std::string::npos) << e;
  EXPECT_NE(e.find("never runs code"), std::string::npos) << e;
  e = ErrorOf(Pt("bad_unknown_global.pt"));
  EXPECT_NE(e.find("'corenet.secret.Thing0000000'"), std::string::npos) << e;
  e = ErrorOf(Pt("bad_storage_size.pt"));
  EXPECT_NE(e.find("storage '0'"), std::string::npos) << e;
  EXPECT_NE(e.find("holds 20 bytes but data.pkl declares 6 elements of float (24 bytes)"),
            std::string::npos)
      << e;
  e = ErrorOf(Pt("bad_compressed.pt"));
  EXPECT_NE(e.find("is compressed"), std::string::npos) << e;
  e = ErrorOf(Pt("bad_legacy.pt"));
  EXPECT_NE(e.find("legacy torch.save file"), std::string::npos) << e;
  e = ErrorOf(Conformance("a_tiny_qknorm_tied") + "/config.json");
  EXPECT_NE(e.find("not a PyTorch checkpoint"), std::string::npos) << e;
  // Truncated copies: every cut is an error naming the file, never a crash.
  const std::string whole = ReadTextFile(Pt("a_tiny_corenet_f32.pt"));
  const std::string dir = test::TempDir("pytorch_trunc");
  for (size_t cut : {size_t{10}, size_t{2000}, whole.size() / 2, whole.size() - 30}) {
    SCOPED_TRACE(cut);
    const std::string path = dir + "/cut.pt";
    std::ofstream(path, std::ios::binary).write(whole.data(), static_cast<std::streamsize>(cut));
    e = ErrorOf(path);
    EXPECT_NE(e.find(path), std::string::npos) << e;
    EXPECT_NE(e.find("truncated"), std::string::npos) << e;
  }
  fs::remove_all(dir);
}

TEST(PyTorchPickle, RejectsWhatATensorCheckpointNeverUses) {
  using namespace std::string_literals;  // the pickles hold NUL bytes
  auto error_of = [](const std::string& bytes) -> std::string {
    try {
      Pickle p(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "x.pkl");
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  // builtins.eval through STACK_GLOBAL, protocol 4.
  EXPECT_NE(error_of("\x80\x04\x8c\x08"
                     "builtins\x8c\x04"
                     "eval\x93)R.")
                .find("'builtins.eval'"),
            std::string::npos);
  EXPECT_NE(error_of("\x80\x02}q\x00"s).find("truncated"), std::string::npos);
  EXPECT_NE(error_of("\x80\x02h\x05.").find("memo entry 5"), std::string::npos);
  EXPECT_NE(error_of("\x80\x02"
                     "a.")
                .find("empty stack"),
            std::string::npos);
  EXPECT_NE(error_of("\x80\x02\x81.").find("opcode 0x81"), std::string::npos);
  // Plain data is read: {'a': [1, 2.5, 'x', None, True], 'b': (-1,)}.
  const std::string ok =
      "\x80\x02}(X\x01\x00\x00\x00"
      "a](K\x01G\x40\x04\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00xN"
      "\x88"
      "eX\x01\x00\x00\x00"
      "bJ\xff\xff\xff\xff\x85u."s;
  const Pickle p(reinterpret_cast<const uint8_t*>(ok.data()), ok.size(), "ok.pkl");
  const PyValue* a = p.Get(p.root(), "a");
  ASSERT_NE(a, nullptr);
  ASSERT_EQ(a->items.size(), 5u);
  EXPECT_EQ(p.at(a->items[0]).i, 1);
  EXPECT_EQ(p.at(a->items[1]).f, 2.5);
  EXPECT_EQ(p.at(a->items[2]).str, "x");
  EXPECT_EQ(p.at(a->items[3]).kind, PyValue::Kind::kNone);
  EXPECT_TRUE(p.at(a->items[4]).b);
  EXPECT_EQ(p.at(p.Get(p.root(), "b")->items[0]).i, -1);
}

TEST(ZipArchive, Crc32MatchesTheZipChecksum) {
  EXPECT_EQ(Crc32("123456789", 9), 0xCBF43926u);  // the standard check value
}

}  // namespace formats_pytorch_test
}  // namespace elm
