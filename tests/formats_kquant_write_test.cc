// Writing llama.cpp's quantization types (base/kquant_write.h, io/quant_mix.h, io/imatrix.h):
// per-type round trips on synthetic data, llama-quantize's per-tensor type rules, importance
// matrix files, and — with ../shared/conformance/gguf_kquant or any further folder in its format —
// `elm quantize` of the folder's checkpoint with every preset, file for file and tensor for
// tensor equal to llama-quantize's GGUFs.
#include <gtest/gtest.h>

#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "base/dtype.h"
#include "base/error.h"
#include "base/kquant.h"
#include "base/kquant_write.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "io/imatrix.h"
#include "io/quant_mix.h"
#include "test_util.h"

namespace elm {
namespace formats_kquant_write_test {
namespace fs = std::filesystem;
using nlohmann::json;

// ---- Round trips (no data needed) ----

std::vector<float> Gaussian(size_t n, uint32_t seed, float sigma = 0.02f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// RMS of (dequantize(quantize(x)) - x) relative to RMS(x), over rows of 1024.
double RelativeRms(DType t, const std::vector<float>& x, const float* importance = nullptr) {
  const int64_t n = 1024, rows = static_cast<int64_t>(x.size()) / n;
  std::vector<uint8_t> q(DTypeBytes(t, x.size()));
  QuantizeRowsLikeGgml(t, x.data(), q.data(), rows, n, importance);
  std::vector<float> y(x.size());
  ToF32(t, q.data(), y.data(), y.size());
  double e = 0, s = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    e += (static_cast<double>(y[i]) - x[i]) * (static_cast<double>(y[i]) - x[i]);
    s += static_cast<double>(x[i]) * x[i];
  }
  return std::sqrt(e / s);
}

TEST(KquantWrite, NearestIntRoundsHalfToEven) {
  EXPECT_EQ(NearestInt(0.5f), 0);
  EXPECT_EQ(NearestInt(1.5f), 2);
  EXPECT_EQ(NearestInt(2.5f), 2);
  EXPECT_EQ(NearestInt(-0.5f), 0);
  EXPECT_EQ(NearestInt(-1.5f), -2);
  EXPECT_EQ(NearestInt(-2.6f), -3);
  EXPECT_EQ(NearestInt(63.49f), 63);
}

TEST(KquantWrite, RoundTripErrorWithinEachTypesBound) {
  // Gaussian weights: the relative RMS error each type's bits allow (a wrong scale, level or
  // packing gives errors of order 1), and more bits never lose to fewer.
  const std::vector<float> x = Gaussian(64 * 1024, 7);
  const struct {
    DType t;
    double bound;
  } kCases[] = {
      {DType::kQ2_K, 0.40},  {DType::kQ3_K, 0.20},   {DType::kQ4_K, 0.11},   {DType::kQ5_K, 0.055},
      {DType::kQ6_K, 0.028}, {DType::kIQ4_NL, 0.11}, {DType::kIQ4_XS, 0.11}, {DType::kQ4_1, 0.13},
      {DType::kQ5_0, 0.07},  {DType::kQ5_1, 0.065},  {DType::kQ4_0, 0.13},   {DType::kQ8_0, 0.01},
  };
  for (const auto& c : kCases) {
    const double e = RelativeRms(c.t, x);
    EXPECT_LT(e, c.bound) << DTypeName(c.t);
    EXPECT_GT(e, c.bound / 20) << DTypeName(c.t) << ": suspiciously exact";
  }
  EXPECT_LT(RelativeRms(DType::kQ6_K, x), RelativeRms(DType::kQ5_K, x));
  EXPECT_LT(RelativeRms(DType::kQ5_K, x), RelativeRms(DType::kQ4_K, x));
  EXPECT_LT(RelativeRms(DType::kQ4_K, x), RelativeRms(DType::kQ3_K, x));
  EXPECT_LT(RelativeRms(DType::kQ3_K, x), RelativeRms(DType::kQ2_K, x));
}

TEST(KquantWrite, ImportanceWeightsLowerTheWeightedError) {
  // Columns with large importance are kept more exactly: the importance-weighted error is lower
  // than the reference search's for every type with a weighted search.
  const std::vector<float> x = Gaussian(16 * 1024, 11);
  std::vector<float> w(1024);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  for (float& v : w) v = std::pow(u(rng), 4.f) * 100.f;
  for (DType t :
       {DType::kQ2_K, DType::kQ3_K, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kIQ4_NL,
        DType::kIQ4_XS, DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1}) {
    auto weighted_error = [&](const float* importance) {
      std::vector<uint8_t> q(DTypeBytes(t, x.size()));
      QuantizeRowsLikeGgml(t, x.data(), q.data(), 16, 1024, importance);
      std::vector<float> y(x.size());
      ToF32(t, q.data(), y.data(), y.size());
      double e = 0;
      for (size_t i = 0; i < x.size(); ++i) e += w[i % 1024] * (y[i] - x[i]) * (y[i] - x[i]);
      return e;
    };
    EXPECT_LT(weighted_error(w.data()), weighted_error(nullptr)) << DTypeName(t);
  }
}

TEST(KquantWrite, DegenerateBlocks) {
  // All-zero rows give all-zero values; a constant row comes back within its type's step; huge
  // and tiny magnitudes stay finite.
  for (DType t : {DType::kQ2_K, DType::kQ3_K, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K,
                  DType::kIQ4_NL, DType::kIQ4_XS, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1}) {
    SCOPED_TRACE(DTypeName(t));
    for (float v : {0.f, 0.25f, -3.f, 1e-20f, 3e4f}) {
      std::vector<float> x(256, v), y(256);
      std::vector<uint8_t> q(DTypeBytes(t, 256));
      QuantizeRowsLikeGgml(t, x.data(), q.data(), 1, 256, nullptr);
      ToF32(t, q.data(), y.data(), 256);
      for (float f : y) {
        ASSERT_TRUE(std::isfinite(f)) << v;
        if (v == 0.f) {
          ASSERT_EQ(f, 0.f);
        }
        ASSERT_NEAR(f, v, std::fabs(v) * 0.2 + 1e-6) << v;
      }
    }
  }
}

TEST(KquantWrite, UnalignedDestinationAndBadWidths) {
  const std::vector<float> x = Gaussian(512, 5);
  std::vector<uint8_t> a(DTypeBytes(DType::kQ4_K, 512)), b(a.size() + 1);
  QuantizeRowsLikeGgml(DType::kQ4_K, x.data(), a.data(), 2, 256, nullptr);
  QuantizeRowsLikeGgml(DType::kQ4_K, x.data(), b.data() + 1, 2, 256, nullptr);
  EXPECT_EQ(std::memcmp(a.data(), b.data() + 1, a.size()), 0);
  EXPECT_THROW(QuantizeRowsLikeGgml(DType::kQ4_K, x.data(), a.data(), 1, 128, nullptr), Error);
  EXPECT_THROW(QuantizeRowsLikeGgml(DType::kF16, x.data(), a.data(), 1, 256, nullptr), Error);
}

// ---- llama-quantize's type rules ----

TEST(QuantMix, PresetsAndAliases) {
  ASSERT_TRUE(FindQuantPreset("q4_k_m"));
  EXPECT_EQ(FindQuantPreset("q4_k_m")->file_type, 15u);
  EXPECT_EQ(std::string(FindQuantPreset("Q4_K")->name), "Q4_K_M");
  EXPECT_EQ(std::string(FindQuantPreset("q3_k")->name), "Q3_K_M");
  EXPECT_EQ(FindQuantPreset("iq4_xs")->base, DType::kIQ4_XS);
  EXPECT_EQ(FindQuantPreset("q5_1")->file_type, 9u);
  EXPECT_FALSE(FindQuantPreset("q8_0"));  // elm's own Q8_0 writer (convert_hf_to_gguf's layout)
  EXPECT_FALSE(FindQuantPreset("q4_k_x"));
}

// The README table of gguf_kquant: 2 layers, 4 query heads per KV head, tied embeddings.
TEST(QuantMix, TwoLayerTableOfTheConformanceFolder) {
  const QuantMixModel m{2, 4, true};
  const std::vector<std::string> names = {
      "token_embd.weight",     "blk.0.attn_qkv.weight",    "blk.0.attn_output.weight",
      "blk.0.ffn_gate.weight", "blk.0.ffn_up.weight",      "blk.0.ffn_down.weight",
      "blk.1.attn_qkv.weight", "blk.1.attn_output.weight", "blk.1.ffn_gate.weight",
      "blk.1.ffn_up.weight",   "blk.1.ffn_down.weight"};
  const std::map<std::string, std::string> want = {
      {"Q2_K", "Q6_K Q4_K Q3_K Q2_K Q2_K Q3_K Q4_K Q3_K Q2_K Q2_K Q3_K"},
      {"Q3_K_S", "Q6_K Q3_K Q3_K Q3_K Q3_K Q3_K Q3_K Q3_K Q3_K Q3_K Q3_K"},
      {"Q3_K_M", "Q6_K Q5_K Q4_K Q3_K Q3_K Q4_K Q5_K Q4_K Q3_K Q3_K Q4_K"},
      {"Q3_K_L", "Q6_K Q5_K Q5_K Q3_K Q3_K Q5_K Q5_K Q5_K Q3_K Q3_K Q5_K"},
      {"Q4_K_S", "Q6_K Q5_K Q4_K Q4_K Q4_K Q4_K Q5_K Q4_K Q4_K Q4_K Q4_K"},
      {"Q4_K_M", "Q6_K Q4_K Q4_K Q4_K Q4_K Q4_K Q6_K Q4_K Q4_K Q4_K Q6_K"},
      {"Q5_K_S", "Q6_K Q5_K Q5_K Q5_K Q5_K Q5_K Q5_K Q5_K Q5_K Q5_K Q5_K"},
      {"Q5_K_M", "Q6_K Q5_K Q5_K Q5_K Q5_K Q5_K Q6_K Q5_K Q5_K Q5_K Q6_K"},
      {"Q6_K", "Q6_K Q6_K Q6_K Q6_K Q6_K Q6_K Q6_K Q6_K Q6_K Q6_K Q6_K"},
      {"IQ4_NL", "Q6_K Q5_K IQ4_NL IQ4_NL IQ4_NL IQ4_NL Q5_K IQ4_NL IQ4_NL IQ4_NL IQ4_NL"},
      {"IQ4_XS", "Q6_K Q5_K IQ4_XS IQ4_XS IQ4_XS IQ4_XS Q5_K IQ4_XS IQ4_XS IQ4_XS IQ4_XS"},
      {"Q4_1", "Q6_K Q4_1 Q4_1 Q4_1 Q4_1 Q4_1 Q4_1 Q4_1 Q4_1 Q4_1 Q4_1"},
      {"Q5_0", "Q6_K Q5_0 Q5_0 Q5_0 Q5_0 Q5_0 Q5_0 Q5_0 Q5_0 Q5_0 Q5_0"},
      {"Q5_1", "Q6_K Q5_1 Q5_1 Q5_1 Q5_1 Q5_1 Q5_1 Q5_1 Q5_1 Q5_1 Q5_1"},
  };
  for (const auto& [preset, types] : want) {
    std::string got;
    for (const std::string& n : names) {
      if (!got.empty()) got += " ";
      got += DTypeName(QuantMixType(*FindQuantPreset(preset), n, 256, m, {}));
    }
    EXPECT_EQ(got, types) << preset;
  }
  // --pure: the base type everywhere, token_embd included.
  QuantMixOptions pure;
  pure.pure = true;
  for (const std::string& n : names)
    EXPECT_EQ(QuantMixType(*FindQuantPreset("q4_k_m"), n, 256, m, pure), DType::kQ4_K) << n;
}

TEST(QuantMix, LayerRulesAndFallbacks) {
  const QuantPreset q4km = *FindQuantPreset("Q4_K_M");
  const QuantMixModel m16{16, 4, true};
  // use_more_bits(i, 16): layers 0, 1, 14, 15 and every third from 4.
  std::string more;
  for (int i = 0; i < 16; ++i)
    if (QuantMixType(q4km, "blk." + std::to_string(i) + ".ffn_down.weight", 1024, m16, {}) ==
        DType::kQ6_K)
      more += std::to_string(i) + " ";
  EXPECT_EQ(more, "0 1 4 7 10 13 14 15 ");
  // Q3_K_M: ffn_down of the first n_layer/16 layers in Q5_K; attn_v's first two in Q5_K.
  const QuantPreset q3km = *FindQuantPreset("Q3_K_M");
  EXPECT_EQ(QuantMixType(q3km, "blk.0.ffn_down.weight", 1024, m16, {}), DType::kQ5_K);
  EXPECT_EQ(QuantMixType(q3km, "blk.1.ffn_down.weight", 1024, m16, {}), DType::kQ4_K);
  EXPECT_EQ(QuantMixType(q3km, "blk.1.attn_qkv.weight", 1024, m16, {}), DType::kQ5_K);
  EXPECT_EQ(QuantMixType(q3km, "blk.2.attn_qkv.weight", 1024, m16, {}), DType::kQ4_K);
  // IQ4_XS: ffn_down of the first n_layer/8 layers in Q5_K, but not with an importance matrix.
  const QuantPreset iq4xs = *FindQuantPreset("IQ4_XS");
  QuantMixOptions im;
  im.has_imatrix = true;
  EXPECT_EQ(QuantMixType(iq4xs, "blk.1.ffn_down.weight", 1024, m16, {}), DType::kQ5_K);
  EXPECT_EQ(QuantMixType(iq4xs, "blk.1.ffn_down.weight", 1024, m16, im), DType::kIQ4_XS);
  // Q2_K with fewer than 4 query heads per KV head: attn_v in Q3_K.
  EXPECT_EQ(QuantMixType(*FindQuantPreset("Q2_K"), "blk.0.attn_qkv.weight", 256,
                         QuantMixModel{2, 2, true}, {}),
            DType::kQ3_K);
  // An untied model: token_embd keeps the base type, output gets Q6_K.
  const QuantMixModel untied{2, 4, false};
  EXPECT_EQ(QuantMixType(q4km, "token_embd.weight", 256, untied, {}), DType::kQ4_K);
  EXPECT_EQ(QuantMixType(q4km, "output.weight", 256, untied, {}), DType::kQ6_K);
  // Rows that do not fill 256-element blocks fall back as llama-quantize does.
  bool fell = false;
  EXPECT_EQ(QuantMixType(q4km, "blk.3.attn_output.weight", 832, m16, {}, &fell), DType::kQ5_0);
  EXPECT_TRUE(fell);
  EXPECT_EQ(QuantMixType(q4km, "blk.0.ffn_down.weight", 832, m16, {}), DType::kQ8_0);
  EXPECT_EQ(QuantMixType(*FindQuantPreset("Q5_K_S"), "blk.3.ffn_up.weight", 832, m16, {}),
            DType::kQ5_1);
  EXPECT_EQ(QuantMixType(iq4xs, "blk.3.ffn_up.weight", 832, m16, {}), DType::kIQ4_NL);
  EXPECT_EQ(QuantMixType(*FindQuantPreset("Q3_K_S"), "blk.3.ffn_up.weight", 832, m16, {}),
            DType::kQ4_0);
  EXPECT_EQ(QuantMixType(q4km, "blk.3.ffn_up.weight", 100, m16, {}), DType::kF16);
  // The output rule on rows that do not fill the base type's blocks: Q8_0.
  EXPECT_EQ(QuantMixType(q4km, "token_embd.weight", 832, m16, {}, &fell), DType::kQ8_0);
  EXPECT_FALSE(fell);
}

TEST(QuantMix, LlamaQuantizeTensorOrder) {
  std::vector<std::string> v = {"blk.10.ffn_up.weight", "blk.2.attn_norm.weight",
                                "token_embd.weight", "blk.2.attn_k_norm.weight",
                                "output_norm.weight"};
  std::sort(v.begin(), v.end(), LlamaQuantizeOrder);
  EXPECT_EQ(v, (std::vector<std::string>{"output_norm.weight", "token_embd.weight",
                                         "blk.2.attn_k_norm.weight", "blk.2.attn_norm.weight",
                                         "blk.10.ffn_up.weight"}));
}

// ---- Importance matrix files ----

void PutI32(std::string& s, int32_t v) {
  s.append(reinterpret_cast<const char*>(&v), 4);
}

TEST(Imatrix, LegacyFileDividedByCalls) {
  const std::string dir = test::TempDir("imatrix");
  std::string b;
  PutI32(b, 2);
  for (const char* name : {"blk.0.ffn_up.weight", "blk.0.attn_qkv.weight"}) {
    PutI32(b, static_cast<int32_t>(std::strlen(name)));
    b += name;
    PutI32(b, 4);  // ncall
    PutI32(b, 3);  // nval
    for (float f : {4.f, 8.f, 2.f}) b.append(reinterpret_cast<const char*>(&f), 4);
  }
  std::ofstream(dir + "/old.dat", std::ios::binary) << b;
  ImportanceMatrix m = ReadImportanceMatrix(dir + "/old.dat");
  ASSERT_EQ(m.entries.size(), 2u);
  EXPECT_EQ(*m.Find("blk.0.ffn_up.weight"), (std::vector<float>{1.f, 2.f, 0.5f}));
  EXPECT_EQ(m.chunks, 0);
  // Newer legacy files end with the chunk count and the calibration file's name.
  PutI32(b, 17);
  PutI32(b, 8);
  b += "wiki.txt";
  std::ofstream(dir + "/new.dat", std::ios::binary) << b;
  m = ReadImportanceMatrix(dir + "/new.dat");
  EXPECT_EQ(m.chunks, 17);
  EXPECT_EQ(m.datasets, (std::vector<std::string>{"wiki.txt"}));
  // Truncated and non-finite files are errors naming the file.
  std::ofstream(dir + "/cut.dat", std::ios::binary) << b.substr(0, 40);
  try {
    ReadImportanceMatrix(dir + "/cut.dat");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cut.dat"), std::string::npos) << e.what();
  }
  std::string nan = b;
  const float q = std::nanf("");
  std::memcpy(nan.data() + 4 + 4 + 19 + 8, &q, 4);
  std::ofstream(dir + "/nan.dat", std::ios::binary) << nan;
  EXPECT_THROW(ReadImportanceMatrix(dir + "/nan.dat"), Error);
  fs::remove_all(dir);
}

TEST(Imatrix, GgufFileSumsOverCounts) {
  const std::string dir = test::TempDir("imatrix_gguf");
  GgufWriter w;
  w.Set("imatrix.chunk_count", GgufValue::U32(5));
  w.Set("imatrix.chunk_size", GgufValue::U32(512));
  w.Set("imatrix.datasets", GgufValue::StringArray({"calib.txt"}));
  const float sums[4] = {2.f, 4.f, 6.f, 8.f}, counts[1] = {2.f};
  w.AddTensor("blk.0.ffn_down.weight.in_sum2", {4, 1}, GgmlTypeOf(DType::kF32), sums);
  w.AddTensor("blk.0.ffn_down.weight.counts", {1, 1}, GgmlTypeOf(DType::kF32), counts);
  w.Write(dir + "/im.gguf");
  const ImportanceMatrix m = ReadImportanceMatrix(dir + "/im.gguf");
  ASSERT_TRUE(m.Find("blk.0.ffn_down.weight"));
  EXPECT_EQ(*m.Find("blk.0.ffn_down.weight"), (std::vector<float>{1.f, 2.f, 3.f, 4.f}));
  EXPECT_EQ(m.chunks, 5);
  EXPECT_EQ(m.datasets, (std::vector<std::string>{"calib.txt"}));
  fs::remove_all(dir);
}

// ---- elm quantize end to end on the shipped model ----

TEST(KquantWriteCli, ShippedModelEveryPresetLoadsWithFallbacks) {
  // The shipped model's attn_output and ffn_down rows (128 … 1024 values) do not all fill
  // 256-element blocks: those tensors take llama-quantize's fallbacks; every file loads.
  const std::string model = std::string(ELM_SOURCE_DIR) + "/models/openelm-shakespeare";
  const std::string dir = test::TempDir("quantize_cli");
  for (const char* t : {"q2_k", "q4_k_m", "iq4_xs", "q5_1"}) {
    const std::string out = dir + "/" + t + ".gguf";
    std::string so, se;
    ASSERT_EQ(
        test::RunElm("quantize --model '" + model + "' --type " + t + " --output '" + out + "'",
                     &so, &se),
        0)
        << se;
    const GgufFile g(out);
    EXPECT_EQ(g.GetInt("general.file_type"), FindQuantPreset(t)->file_type);
    EXPECT_EQ(g.metadata().back().first, "general.file_type");
    EXPECT_EQ(g.GetTensor("token_embd.weight").type_name(), std::string("Q6_K"));
    // blk.0.ffn_down has 128 columns: Q2_K's Q3_K falls back to Q4_0, Q4_K_M's Q6_K (layer 0
    // gets more bits) to Q8_0, IQ4_XS's Q5_K (the first n_layer/8 layers) to Q5_1; Q5_1 fits.
    // blk.7.ffn_down (1024 columns) keeps IQ4_XS.
    const std::map<std::string, std::string> down = {
        {"q2_k", "Q4_0"}, {"q4_k_m", "Q8_0"}, {"iq4_xs", "Q5_1"}, {"q5_1", "Q5_1"}};
    EXPECT_EQ(g.GetTensor("blk.0.ffn_down.weight").type_name(), down.at(t));
    if (std::string(t) == "iq4_xs") {
      EXPECT_EQ(g.GetTensor("blk.7.ffn_down.weight").type_name(), std::string("IQ4_XS"));
    }
    ASSERT_EQ(test::RunElm(
                  "logits --model '" + out + "' --ids 1,450,338 --output '" + dir + "/logits.bin'",
                  &so, &se),
              0)
        << t << ": " << se;
  }
  // elm kld --converted compares the quantized file with the model it came from.
  std::ofstream(dir + "/text.txt") << "ROMEO:\nBut soft, what light through yonder window "
                                      "breaks?\nIt is the east, and Juliet is the sun.\n";
  {
    std::string so, se;
    ASSERT_EQ(test::RunElm("kld --model '" + model + "' --converted '" + dir +
                               "/q4_k_m.gguf' --file '" + dir + "/text.txt'",
                           &so, &se),
              0)
        << se;
    EXPECT_NE(so.find("mean KL"), std::string::npos) << so;
    EXPECT_NE(test::RunElm("kld --model '" + model + "' --file '" + dir + "/text.txt'", &so, &se),
              0);
  }
  // An importance matrix changes the weights and is recorded; one of another width is an error.
  std::string b;
  PutI32(b, 1);
  const std::string name = "blk.7.ffn_up.weight";
  PutI32(b, static_cast<int32_t>(name.size()));
  b += name;
  PutI32(b, 1);
  PutI32(b, 256);
  for (int i = 0; i < 256; ++i) {
    const float f = i % 7 == 0 ? 50.f : 0.01f;
    b.append(reinterpret_cast<const char*>(&f), 4);
  }
  std::ofstream(dir + "/im.dat", std::ios::binary) << b;
  std::string so, se;
  ASSERT_EQ(test::RunElm("quantize --model '" + model + "' --type q4_k_m --imatrix '" + dir +
                             "/im.dat' --output '" + dir + "/im.gguf'",
                         &so, &se),
            0)
      << se;
  const GgufFile plain(dir + "/q4_k_m.gguf"), weighted(dir + "/im.gguf");
  EXPECT_EQ(weighted.GetInt("quantize.imatrix.entries_count"), 1);
  const GgufTensorInfo &a = plain.GetTensor(name), &c = weighted.GetTensor(name);
  EXPECT_NE(std::memcmp(a.data, c.data, a.nbytes), 0);
  const GgufTensorInfo &a2 = plain.GetTensor("blk.7.ffn_gate.weight"),
                       &c2 = weighted.GetTensor("blk.7.ffn_gate.weight");
  EXPECT_EQ(std::memcmp(a2.data, c2.data, a2.nbytes), 0);  // no entry: the reference search
  std::ofstream(dir + "/bad.dat", std::ios::binary) << b.substr(0, b.size() - 4 * 128);
  EXPECT_NE(test::RunElm("quantize --model '" + model + "' --type q4_k_m --imatrix '" + dir +
                             "/bad.dat' --output '" + dir + "/bad.gguf'",
                         &so, &se),
            0);
  EXPECT_NE(se.find("bad.dat"), std::string::npos) << se;
  // --pure and --imatrix need a llama-quantize type.
  EXPECT_NE(test::RunElm(
                "quantize --model '" + model + "' --type q8_0 --pure --output '" + dir + "/x.gguf'",
                &so, &se),
            0);
  fs::remove_all(dir);
}

// ---- Against llama-quantize (../shared/conformance/gguf_kquant and folders like it) ----

struct Folder {
  fs::path dir, checkpoint, unpacked;
  json ref;
};

std::vector<Folder> Folders(std::string* why) {
  std::vector<Folder> folders;
  const std::string shared = test::SharedConformanceDir();
  if (shared.empty()) {
    *why = "../shared/conformance not found";
    return folders;
  }
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(shared)) dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  for (const fs::path& d : dirs) {
    if (!fs::exists(d / "reference.json")) continue;
    fs::path archive;
    for (const auto& e : fs::directory_iterator(d))
      if (e.path().string().ends_with("-ggufs.tar.xz")) archive = e.path();
    if (archive.empty()) continue;
    std::ifstream in(d / "reference.json");
    json ref = json::parse(in);
    if (!ref.contains("files") || !ref.contains("checkpoint")) continue;
    Folder f{d, (d / ref["checkpoint"].get<std::string>()).lexically_normal(),
             fs::path(ELM_BINARY).parent_path() / "fixtures" / d.filename(), std::move(ref)};
    if (!fs::exists(f.checkpoint / "config.json")) continue;
    if (!test::UnpackOnce(archive.string(), f.unpacked.string(), why)) continue;
    folders.push_back(std::move(f));
  }
  if (folders.empty() && why->empty())
    *why = "no K-quant reference folder in ../shared/conformance";
  return folders;
}

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Which tensors of `ours` differ from `theirs` (names, types, bytes), for the failure message.
std::string TensorDiff(const std::string& ours, const std::string& theirs) {
  const GgufFile a(ours), b(theirs);
  std::string d;
  if (a.tensors().size() != b.tensors().size()) d += "tensor counts differ; ";
  for (size_t i = 0; i < std::min(a.tensors().size(), b.tensors().size()); ++i) {
    const GgufTensorInfo &x = a.tensors()[i], &y = b.tensors()[i];
    if (x.name != y.name || x.ggml_type != y.ggml_type || x.nbytes != y.nbytes ||
        std::memcmp(x.data, y.data, x.nbytes) != 0)
      d += x.name + " (" + x.type_name() + ") vs " + y.name + " (" + y.type_name() + "); ";
  }
  if (a.metadata().size() != b.metadata().size()) d += "metadata key counts differ; ";
  return d.empty() ? "only the metadata bytes differ" : d;
}

TEST(KquantWriteGguf, EveryPresetEqualsLlamaQuantizeFileForFile) {
  std::string why;
  const std::vector<Folder> folders = Folders(&why);
  if (folders.empty()) GTEST_SKIP() << why << ": skipped";
  const std::string tmp = test::TempDir("kquant_write");
  int compared = 0;
  for (const Folder& f : folders) {
    // elm's f32 GGUF, the file llama-quantize started from (the README: byte-identical).
    const std::string f32 = tmp + "/f32.gguf";
    std::string so, se;
    ASSERT_EQ(test::RunElm("convert --model '" + f.checkpoint.string() +
                               "' --to gguf --type f32 --no-chat-template --output '" + f32 + "'",
                           &so, &se),
              0)
        << se;
    for (const auto& [key, entry] : f.ref["files"].items()) {
      const std::string made_by = entry.value("made_by", "");
      if (!made_by.starts_with("llama-quantize") || made_by.find("--imatrix") != std::string::npos)
        continue;
      const bool pure = made_by.find("--pure") != std::string::npos;
      const auto preset = FindQuantPreset(key.substr(0, key.find('-')));
      if (!preset) continue;
      const fs::path theirs = f.unpacked / entry["file"].get<std::string>();
      ASSERT_TRUE(fs::exists(theirs)) << theirs;
      const std::string want = ReadAll(theirs);
      // From the checkpoint folder, and for the Q4_K_M files also from the f32 GGUF (whose keys
      // llama-quantize copies): the same bytes as llama-quantize's.
      std::vector<std::string> sources = {f.checkpoint.string()};
      if (std::string(preset->name) == "Q4_K_M") sources.push_back(f32);
      for (const std::string& source : sources) {
        SCOPED_TRACE(f.dir.filename().string() + " " + key + " from " + source);
        const std::string ours = tmp + "/" + key + ".gguf";
        ASSERT_EQ(test::RunElm("quantize --model '" + source + "' --type " + preset->name +
                                   (pure ? " --pure" : "") + " --no-chat-template --output '" +
                                   ours + "'",
                               &so, &se),
                  0)
            << se;
        const std::string got = ReadAll(ours);
        EXPECT_TRUE(got == want) << "differs from " << theirs << ": " << TensorDiff(ours, theirs);
        ++compared;
        fs::remove(ours);
      }
    }
  }
  EXPECT_GT(compared, 0);
  fs::remove_all(tmp);
}

std::string Sha256Hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    static const char digits[] = "0123456789abcdef";
    hex += digits[md[i] >> 4];
    hex += digits[md[i] & 15];
  }
  return hex;
}

// With an importance matrix: tests/data/kquant/imatrix holds llama-imatrix's matrix for the
// conformance checkpoint k_dim256_vocab32k and the sha256 of llama-quantize's files made with it
// (tests/tools/make_imatrix_reference.sh). `elm quantize --imatrix` of the same f32 GGUF, run the
// same way (relative names, which both record), writes the same bytes.
TEST(KquantWriteGguf, ImatrixPresetsEqualLlamaQuantize) {
  const fs::path data = fs::path(test::DataDir()) / "kquant" / "imatrix";
  std::ifstream in(data / "reference.json");
  ASSERT_TRUE(in) << data / "reference.json";
  const json ref = json::parse(in);
  const std::string shared = test::SharedConformanceDir();
  const fs::path checkpoint = fs::path(shared) / ref["checkpoint"].get<std::string>();
  if (shared.empty() || !fs::exists(checkpoint / "config.json"))
    GTEST_SKIP() << "../shared/conformance/" << ref["checkpoint"].get<std::string>()
                 << " not found: skipped";
  const std::string tmp = test::TempDir("kquant_imatrix");
  const std::string source = ref["source"], imatrix = ref["imatrix"];
  fs::copy_file(data / imatrix, fs::path(tmp) / imatrix);
  const std::string in_tmp = "cd '" + tmp + "' && '" + std::string(ELM_BINARY) + "' ";
  std::string so, se;
  ASSERT_EQ(test::RunShell(in_tmp + "convert --model '" + checkpoint.string() +
                               "' --to gguf --type f32 --no-chat-template --output " + source,
                           &so, &se),
            0)
      << se;
  int compared = 0;
  for (const auto& [type, entry] : ref["files"].items()) {
    SCOPED_TRACE(type);
    const std::string out = type + ".gguf";
    ASSERT_EQ(test::RunShell(in_tmp + "quantize --model " + source + " --type " + type +
                                 " --imatrix " + imatrix + " --no-chat-template --output " + out,
                             &so, &se),
              0)
        << se;
    const std::string got = ReadAll(fs::path(tmp) / out);
    EXPECT_EQ(got.size(), entry["bytes"].get<size_t>());
    EXPECT_EQ(Sha256Hex(got), entry["sha256"].get<std::string>())
        << "elm quantize --imatrix differs from llama-quantize's " << type;
    ++compared;
  }
  EXPECT_EQ(compared, 4);
  fs::remove_all(tmp);
}

}  // namespace formats_kquant_write_test
}  // namespace elm
