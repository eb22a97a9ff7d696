// Conversions between HF, GGUF and MLX layouts: bit-exact round trips for F32/F16/BF16, the same
// logits from every layout, quantized logits within docs/formats.md's tolerances, MLX affine
// quantization, atomic outputs, and the CLI (convert, quantize, gguf-info, generate on a GGUF).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <tuple>

#include "base/error.h"
#include "base/mmap_file.h"
#include "io/convert.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "io/mlx_quant.h"
#include "io/safetensors.h"
#include "model/session.h"
#include "test_util.h"

namespace elm {
namespace formats_convert_test {
namespace fs = std::filesystem;
using nlohmann::json;

std::vector<std::string> ModelDirs() {
  std::vector<std::string> dirs;
  for (const char* n : {"a_tiny_qknorm_tied", "b_tiny_noqknorm_untied", "c_tiny_uniform_llamalike"})
    dirs.push_back(test::DataDir() + "/conformance/" + n);
  const std::string shared = test::SharedConformanceDir();
  if (!shared.empty()) dirs.push_back(shared + "/p_small_vocab32k");
  return dirs;
}

std::string Name(const std::string& dir) {
  return fs::path(dir).filename().string();
}

float MaxAbs(const std::vector<float>& v) {
  float m = 0;
  for (float x : v) m = std::max(m, std::fabs(x));
  return m;
}

// RMS of (got - ref) over RMS of ref: the error relative to the logits' spread.
float RelRms(const std::vector<float>& got, const std::vector<float>& ref) {
  double e = 0, r = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    e += (got[i] - ref[i]) * static_cast<double>(got[i] - ref[i]);
    r += ref[i] * static_cast<double>(ref[i]);
  }
  return static_cast<float>(std::sqrt(e / std::max(r, 1e-30)));
}

void Convert(const std::string& from, const std::string& to, const std::string& out,
             std::optional<DType> type = std::nullopt,
             std::optional<MlxQuantization> q = std::nullopt) {
  ConvertOptions o;
  o.to = to;
  o.output = out;
  o.type = type;
  o.mlx_quant = q;
  ConvertModel(OpenModelSource(from), o);
}

// Every model tensor of two safetensors folders: same names, dtypes, shapes and bytes. (Unused
// extras such as transformer.classifier.weight are not carried over by conversions.)
void ExpectSameTensors(const std::string& a, const std::string& b) {
  const TensorStore sa(a), sb(b);
  const auto specs = ExpectedTensors(Model::Load(a)->config());
  ASSERT_EQ(sb.all().size(), specs.size()) << b;
  for (const auto& spec : specs) {
    const TensorView* va = sa.Find(spec.name);
    const TensorView* vb = sb.Find(spec.name);
    const std::string& name = spec.name;
    ASSERT_NE(va, nullptr) << name;
    ASSERT_NE(vb, nullptr) << name;
    EXPECT_EQ(va->dtype_name, vb->dtype_name) << name;
    EXPECT_EQ(va->shape, vb->shape) << name;
    ASSERT_EQ(va->nbytes, vb->nbytes) << name;
    EXPECT_EQ(std::memcmp(va->data, vb->data, va->nbytes), 0) << name << " differs";
  }
}

class FormatsConvert : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = test::TempDir("formats"); }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

TEST_F(FormatsConvert, HfGgufHfRoundTripIsBitExact) {
  for (const auto& src : ModelDirs()) {
    for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
      SCOPED_TRACE(Name(src) + " " + DTypeName(t));
      const std::string base = dir_ + "/" + Name(src) + DTypeName(t);
      const std::string hf = base + "_hf", gguf = base + ".gguf", back = base + "_back";
      Convert(src, "hf", hf, t);
      Convert(hf, "gguf", gguf);  // types as stored
      Convert(gguf, "hf", back);
      ExpectSameTensors(hf, back);
      EXPECT_EQ(ReadTextFile(hf + "/config.json"), ReadTextFile(back + "/config.json"));
      const GgufFile g(gguf);
      EXPECT_EQ(g.GetTensor("blk.0.attn_qkv.weight").ggml_type, GgmlTypeOf(t));
      EXPECT_EQ(g.GetTensor("blk.0.attn_norm.weight").ggml_type, 0u) << "norms stay F32";
      fs::remove_all(hf);
      fs::remove_all(back);
      fs::remove(gguf);
    }
  }
}

TEST_F(FormatsConvert, GgufGivesTheSameLogitsAsSafetensors) {
  for (const auto& src : ModelDirs()) {
    SCOPED_TRACE(Name(src));
    const auto tokens = test::LongestSequenceTokens(src);
    const auto ref = test::AllLogits(Model::Load(src), tokens);
    for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
      const std::string gguf = dir_ + "/" + Name(src) + DTypeName(t) + ".gguf";
      Convert(src, "gguf", gguf, t);
      const auto got = test::AllLogits(Model::Load(gguf), tokens);
      LoadOptions lo;
      lo.weights = t;
      const auto same_type = test::AllLogits(Model::Load(src, lo), tokens);
      // The same weights in the same type through the same kernels: identical.
      EXPECT_EQ(test::MaxAbsDiff(got.data(), same_type.data(), got.size()), 0.0f) << DTypeName(t);
      if (t == DType::kF32) {
        EXPECT_EQ(test::MaxAbsDiff(got.data(), ref.data(), ref.size()), 0.0f);
        EXPECT_EQ(Model::Load(gguf)->weights_dtype(), "F32");
      }
      fs::remove(gguf);
    }
  }
}

// docs/formats.md: quantized logits vs the f32 path: max |error| relative to max(1, max |logit|)
// and the RMS error relative to the logits' RMS. The conformance weights are random (linear
// weights N(0, 0.1^2)), which makes 4-bit noise large: those bounds mainly prove the decoding
// (a layout error gives a relative RMS above 1).
TEST_F(FormatsConvert, QuantizedGgufLogitsWithinTolerance) {
  for (const auto& src : ModelDirs()) {
    SCOPED_TRACE(Name(src));
    const auto tokens = test::LongestSequenceTokens(src);
    const auto ref = test::AllLogits(Model::Load(src), tokens);
    const float scale = std::max(1.0f, MaxAbs(ref));
    for (auto [t, tol, rel_tol] :
         {std::tuple{DType::kQ8_0, 0.1f, 0.06f}, std::tuple{DType::kQ4_0, 1.2f, 0.8f}}) {
      const std::string gguf = dir_ + "/" + Name(src) + DTypeName(t) + ".gguf";
      Convert(src, "gguf", gguf, t);
      auto model = Model::Load(gguf);
      EXPECT_EQ(model->weights_dtype(), DTypeName(t));
      const auto got = test::AllLogits(model, tokens);
      const float err = test::MaxAbsDiff(got.data(), ref.data(), ref.size());
      const float rel = RelRms(got, ref);
      std::printf("[formats] %-26s %-4s logits max|err| %.4g (max|logit| %.3g), rel rms %.4g\n",
                  Name(src).c_str(), DTypeName(t), err, scale, rel);
      EXPECT_LE(err, tol * scale) << DTypeName(t);
      EXPECT_LE(rel, rel_tol) << DTypeName(t);
      // elm's GGUF quantization is the same as its load-time conversion.
      LoadOptions lo;
      lo.weights = t;
      const auto converted = test::AllLogits(Model::Load(src, lo), tokens);
      EXPECT_EQ(test::MaxAbsDiff(got.data(), converted.data(), got.size()), 0.0f);
      // Re-quantizing from the GGUF itself keeps the blocks (q8_0 -> q8_0 is a copy).
      const std::string again = gguf + ".again.gguf";
      Convert(gguf, "gguf", again, t);
      const GgufFile g1(gguf), g2(again);
      for (const auto& ti : g1.tensors()) {
        const GgufTensorInfo& tj = g2.GetTensor(ti.name);
        ASSERT_EQ(ti.nbytes, tj.nbytes);
        EXPECT_EQ(std::memcmp(ti.data, tj.data, ti.nbytes), 0) << ti.name;
      }
      fs::remove(gguf);
      fs::remove(again);
    }
  }
}

// LoadOptions::mmap = false (--no-mmap) copies the matrices a model would use in place from its
// file: the same bytes, so the same logits, from safetensors and from GGUF of every type.
TEST_F(FormatsConvert, NoMmapGivesIdenticalLogits) {
  for (const auto& src : ModelDirs()) {
    SCOPED_TRACE(Name(src));
    const auto tokens = test::LongestSequenceTokens(src);
    LoadOptions copy;
    copy.mmap = false;
    const auto mapped = test::AllLogits(Model::Load(src), tokens);
    const auto copied = test::AllLogits(Model::Load(src, copy), tokens);
    EXPECT_EQ(test::MaxAbsDiff(copied.data(), mapped.data(), mapped.size()), 0.0f);
    for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0}) {
      const std::string gguf = dir_ + "/" + Name(src) + DTypeName(t) + ".gguf";
      Convert(src, "gguf", gguf, t);
      const auto a = test::AllLogits(Model::Load(gguf), tokens);
      const auto b = test::AllLogits(Model::Load(gguf, copy), tokens);
      EXPECT_EQ(test::MaxAbsDiff(a.data(), b.data(), a.size()), 0.0f) << DTypeName(t);
      fs::remove(gguf);
    }
  }
}

TEST_F(FormatsConvert, LoadOptionsConvertGgufWeights) {
  const std::string src = ModelDirs()[0];
  const std::string gguf = dir_ + "/m.gguf";
  Convert(src, "gguf", gguf, DType::kF32);
  LoadOptions lo;
  lo.weights = DType::kQ8_0;
  const auto tokens = test::LongestSequenceTokens(src);
  auto a = test::AllLogits(Model::Load(gguf, lo), tokens);
  auto b = test::AllLogits(Model::Load(src, lo), tokens);
  EXPECT_EQ(test::MaxAbsDiff(a.data(), b.data(), a.size()), 0.0f);
  EXPECT_EQ(Model::Load(gguf, lo)->weights_dtype(), "Q8_0");
}

TEST_F(FormatsConvert, MlxFolderLoadsWithTheSameLogits) {
  for (const auto& src : ModelDirs()) {
    SCOPED_TRACE(Name(src));
    const std::string mlx = dir_ + "/" + Name(src) + "_mlx", back = mlx + "_hf";
    Convert(src, "mlx", mlx);
    const json cfg = json::parse(ReadTextFile(mlx + "/config.json"));
    const ModelConfig c = Model::Load(src)->config();
    EXPECT_EQ(cfg["model_type"], "openelm");
    EXPECT_EQ(cfg["num_query_heads"].size(), static_cast<size_t>(c.n_layers));
    EXPECT_EQ(cfg["ffn_multipliers"].size(), static_cast<size_t>(c.n_layers));
    EXPECT_EQ(SafetensorsFile(mlx + "/model.safetensors").metadata().at("format"), "mlx");
    const auto tokens = test::LongestSequenceTokens(src);
    const auto ref = test::AllLogits(Model::Load(src), tokens);
    const auto got = test::AllLogits(Model::Load(mlx), tokens);
    EXPECT_EQ(test::MaxAbsDiff(got.data(), ref.data(), ref.size()), 0.0f);
    Convert(mlx, "hf", back);
    ExpectSameTensors(src, back);
    fs::remove_all(mlx);
    fs::remove_all(back);
  }
}

// The same checkpoint as an HF folder, a sharded HF folder, a GGUF file and an MLX folder: each
// opens as the same model source and loads through Model::Load (mapped or copied) to the same
// logits, and the CLI's --model takes every one of them.
TEST_F(FormatsConvert, EveryLayoutLoadsThroughOneSource) {
  for (const auto& src : ModelDirs()) {
    SCOPED_TRACE(Name(src));
    const std::string base = dir_ + "/" + Name(src);
    const std::string sharded = base + "_sharded", gguf = base + ".gguf", mlx = base + "_mlx";
    fs::create_directories(sharded);
    fs::copy_file(src + "/config.json", sharded + "/config.json");
    const TensorStore store(src);
    std::vector<TensorToWrite> shard[2];
    json index;
    int n = 0;
    for (const auto& [name, v] : store.all()) {
      const int k = n++ % 2;
      shard[k].push_back({name, *v->dtype, v->shape, v->data});
      index["weight_map"][name] = "model-0000" + std::to_string(k + 1) + "-of-00002.safetensors";
    }
    for (int k = 0; k < 2; ++k)
      WriteSafetensors(sharded + "/model-0000" + std::to_string(k + 1) + "-of-00002.safetensors",
                       shard[k]);
    const std::string idx = index.dump();
    WriteFileAtomic(sharded + "/model.safetensors.index.json", idx.data(), idx.size());
    Convert(src, "gguf", gguf);
    Convert(src, "mlx", mlx);

    const auto tokens = test::LongestSequenceTokens(src);
    const ModelSource ref_src = OpenModelSource(src);
    const auto ref = test::AllLogits(Model::Load(src), tokens);
    LoadOptions copy;
    copy.mmap = false;
    const std::pair<std::string, std::string> layouts[] = {
        {src, "hf"}, {sharded, "hf"}, {gguf, "gguf"}, {mlx, "hf"}};  // "mlx": MLX-quantized
    for (const auto& [path, format] : layouts) {
      SCOPED_TRACE(path);
      const ModelSource s = OpenModelSource(path);
      EXPECT_EQ(s.format, format);
      ASSERT_EQ(s.tensors.size(), ref_src.tensors.size());
      for (size_t i = 0; i < s.tensors.size(); ++i) {
        const SourceTensor a = s.Fetch(i), b = ref_src.Fetch(i);
        EXPECT_EQ(a.spec.name, b.spec.name);
        EXPECT_EQ(a.spec.shape, b.spec.shape) << a.spec.name;
        ASSERT_EQ(a.dtype, b.dtype) << a.spec.name;
        const auto ab = ConvertTensor(a, a.dtype), bb = ConvertTensor(b, b.dtype);
        EXPECT_TRUE(ab == bb) << a.spec.name << " differs";
      }
      for (const LoadOptions& lo : {LoadOptions{}, copy}) {
        const auto m = Model::Load(path, lo);
        EXPECT_EQ(m->config().ParamCount(), Model::Load(src)->config().ParamCount());
        const auto got = test::AllLogits(m, tokens);
        ASSERT_EQ(got.size(), ref.size());
        EXPECT_EQ(test::MaxAbsDiff(got.data(), ref.data(), ref.size()), 0.0f);
      }
    }
    // The CLI's --model: the same logits from every layout.
    std::string out, err, want;
    for (const auto& [path, format] : layouts) {
      const std::string bin = base + "_" + fs::path(path).filename().string() + ".bin";
      ASSERT_EQ(test::RunElm("logits --model " + path + " --ids 1,5,9 --output " + bin, &out, &err),
                0)
          << err;
      const std::string got = ReadTextFile(bin);
      if (want.empty()) want = got;
      EXPECT_TRUE(got == want) << path;
      ASSERT_EQ(test::RunElm("info --model " + path, &out, &err), 0) << err;
    }
    fs::remove_all(sharded);
    fs::remove_all(mlx);
    fs::remove(gguf);
  }
}

TEST_F(FormatsConvert, MlxQuantizedFolders) {
  for (const auto& src : ModelDirs()) {
    SCOPED_TRACE(Name(src));
    const auto tokens = test::LongestSequenceTokens(src);
    const auto ref = test::AllLogits(Model::Load(src), tokens);
    const float scale = std::max(1.0f, MaxAbs(ref));
    for (auto [bits, tol, rel_tol] : {std::tuple{8, 0.1f, 0.06f}, std::tuple{4, 1.2f, 0.8f}}) {
      const std::string mlx = dir_ + "/" + Name(src) + "_q" + std::to_string(bits);
      Convert(src, "mlx", mlx, DType::kF16, MlxQuantization{bits, 64});
      const json cfg = json::parse(ReadTextFile(mlx + "/config.json"));
      EXPECT_EQ(cfg["quantization"]["bits"], bits);
      EXPECT_EQ(cfg["quantization"]["group_size"], 64);
      const SafetensorsFile st(mlx + "/model.safetensors");
      const auto src_model = Model::Load(src);
      const ModelConfig& c = src_model->config();
      const TensorView* w = st.Find("transformer.layers.0.attn.qkv_proj.weight");
      ASSERT_NE(w, nullptr);
      EXPECT_EQ(w->dtype_name, "U32");
      EXPECT_EQ(w->shape, (std::vector<int64_t>{c.qkv_out(0), c.dim * bits / 32}));
      EXPECT_EQ(st.Find("transformer.layers.0.attn.qkv_proj.scales")->shape,
                (std::vector<int64_t>{c.qkv_out(0), c.dim / 64}));
      EXPECT_EQ(st.Find("transformer.layers.0.attn.qkv_proj.biases")->dtype_name, "F16");
      EXPECT_EQ(st.Find("transformer.norm.weight")->dtype_name, "F16");
      const auto got = test::AllLogits(Model::Load(mlx), tokens);
      const float err = test::MaxAbsDiff(got.data(), ref.data(), ref.size());
      const float rel = RelRms(got, ref);
      std::printf("[formats] %-26s mlx%d logits max|err| %.4g (max|logit| %.3g), rel rms %.4g\n",
                  Name(src).c_str(), bits, err, scale, rel);
      EXPECT_LE(err, tol * scale);
      EXPECT_LE(rel, rel_tol);
      // Dequantized on load, then converted further on request.
      LoadOptions lo;
      lo.weights = DType::kBF16;
      EXPECT_EQ(Model::Load(mlx, lo)->weights_dtype(), "BF16");
      // MLX-quantized -> GGUF works from the dequantized values. (The folder's unquantized
      // tensors are F16, which prefill rounds to bf16; the F32 GGUF's are used exactly.)
      Convert(mlx, "gguf", mlx + ".gguf", DType::kF32);
      const auto via_gguf = test::AllLogits(Model::Load(mlx + ".gguf"), tokens);
      EXPECT_LE(test::MaxAbsDiff(via_gguf.data(), got.data(), got.size()), 1e-2f * scale);
      fs::remove_all(mlx);
      fs::remove(mlx + ".gguf");
    }
  }
}

TEST(MlxQuant, PackingAndErrorBounds) {
  // 8 values per word at 4 bits, lowest bits first.
  MlxQuantization q{4, 32};
  std::vector<float> w(32);
  for (int i = 0; i < 32; ++i) w[i] = static_cast<float>(i % 16);  // exactly 0..15
  std::vector<uint32_t> packed(4);
  float s, b;
  MlxQuantizeRow(w.data(), 32, q, DType::kF32, packed.data(), &s, &b);
  std::vector<float> back(32);
  MlxDequantizeRow(packed.data(), &s, &b, DType::kF32, 32, q, back.data());
  EXPECT_EQ(back, w);
  EXPECT_EQ(packed[0] & 0xF, (0u - static_cast<uint32_t>(b / s)) & 0xF);
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0, 1);
  for (int bits : {2, 4, 8}) {
    MlxQuantization qq{bits, 64};
    std::vector<float> x(256);
    for (auto& v : x) v = nd(rng);
    x[5] = 0.0f;
    std::vector<uint32_t> p(256 * bits / 32);
    std::vector<uint16_t> sc(4), bi(4);
    MlxQuantizeRow(x.data(), 256, qq, DType::kF16, p.data(), sc.data(), bi.data());
    std::vector<float> y(256);
    MlxDequantizeRow(p.data(), sc.data(), bi.data(), DType::kF16, 256, qq, y.data());
    // Half a step inside the grid; up to one step at the far end of the range, which MLX's
    // zero-on-grid adjustment of the scale can pull in by up to one step.
    for (int g = 0; g < 4; ++g) {
      const float step = std::fabs(F16ToF32(sc[g]));
      for (int j = g * 64; j < (g + 1) * 64; ++j)
        EXPECT_LE(std::fabs(y[j] - x[j]), step * 1.01f + 1e-6f) << bits << " " << j;
    }
    // 0.0 is on the grid up to the rounding of the f16 scale and bias.
    EXPECT_LE(std::fabs(y[5]), 0.1f * std::fabs(F16ToF32(sc[0]))) << "zero stays (nearly) zero";
  }
}

TEST_F(FormatsConvert, FailedWritesLeaveNothing) {
  // A GGUF whose tensor data cannot be produced: no file, no temp file.
  const std::string path = dir_ + "/broken.gguf";
  GgufWriter w;
  w.Set("general.architecture", GgufValue::String("openelm"));
  w.AddTensor("t", {32}, 0, [](uint8_t*) { Fail("simulated failure"); });
  EXPECT_THROW(w.Write(path), Error);
  EXPECT_TRUE(fs::is_empty(dir_)) << "leftovers in " << dir_;
  // A folder conversion that fails midway: no output folder, no temp folder.
  ModelSource src = OpenModelSource(ModelDirs()[0]);
  src.config_json = "{not json";
  ConvertOptions o;
  o.to = "hf";
  o.output = dir_ + "/out";
  EXPECT_THROW(ConvertModel(src, o), Error);
  EXPECT_TRUE(fs::is_empty(dir_)) << "leftovers in " << dir_;
  // An existing non-empty folder is never overwritten.
  fs::create_directories(o.output);
  std::ofstream(o.output + "/keep") << "x";
  EXPECT_THROW(ConvertModel(OpenModelSource(ModelDirs()[0]), o), Error);
  EXPECT_TRUE(fs::exists(o.output + "/keep"));
}

TEST_F(FormatsConvert, BadConvertRequestsAreErrors) {
  const ModelSource src = OpenModelSource(ModelDirs()[0]);
  ConvertOptions o;
  o.output = dir_ + "/x";
  o.to = "onnx";
  EXPECT_THROW(ConvertModel(src, o), Error);
  o.to = "hf";
  o.type = DType::kQ8_0;
  EXPECT_THROW(ConvertModel(src, o), Error);
  o.type.reset();
  o.mlx_quant = MlxQuantization{4, 64};
  EXPECT_THROW(ConvertModel(src, o), Error);
  EXPECT_THROW(OpenModelSource(dir_ + "/missing"), Error);
}

TEST_F(FormatsConvert, CommandLine) {
  const std::string src = ModelDirs()[0];
  const std::string gguf = dir_ + "/m.gguf";
  std::string out, err;
  ASSERT_EQ(test::RunElm("quantize --model " + src + " --type q8_0 --output " + gguf, &out, &err),
            0)
      << err;
  ASSERT_EQ(test::RunElm("gguf-info " + gguf, &out, &err), 0) << err;
  EXPECT_NE(out.find("general.architecture"), std::string::npos);
  EXPECT_NE(out.find("blk.0.ffn_gate.weight"), std::string::npos);
  EXPECT_NE(out.find("Q8_0"), std::string::npos);
  ASSERT_EQ(test::RunElm("info --model " + gguf, &out, &err), 0) << err;
  EXPECT_NE(out.find("Q8_0"), std::string::npos);
  ASSERT_EQ(
      test::RunElm("convert --model " + gguf + " --to hf --output " + dir_ + "/hf", &out, &err), 0)
      << err;
  EXPECT_TRUE(fs::exists(dir_ + "/hf/model.safetensors"));
  ASSERT_EQ(
      test::RunElm("convert --model " + src + " --to mlx --q-bits 4 --output " + dir_ + "/mlx",
                   &out, &err),
      0)
      << err;
  ASSERT_EQ(test::RunElm("logits --model " + dir_ + "/mlx --ids 1,5,9 --output " + dir_ + "/l.bin",
                         &out, &err),
            0)
      << err;
  EXPECT_NE(test::RunElm("convert --model " + src + " --to gguf --type q7_k --output " + gguf, &out,
                         &err),
            0);
  EXPECT_NE(err.find("--type"), std::string::npos) << err;
  EXPECT_NE(test::RunElm("gguf-info " + src + "/config.json", &out, &err), 0);
  EXPECT_NE(err.find("not a GGUF file"), std::string::npos) << err;
}

}  // namespace formats_convert_test
}  // namespace elm
