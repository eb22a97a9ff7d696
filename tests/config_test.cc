// Layer-wise scaling math, presets and config.json validation.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

#include "base/error.h"
#include "base/mmap_file.h"
#include "config/hf_config.h"
#include "config/model_config.h"
#include "test_util.h"

namespace elm {
namespace config_test {
using nlohmann::json;

TEST(Config, MakeDivisibleMatchesCoreNet) {
  EXPECT_EQ(MakeDivisible(640, 256), 768);     // 270M layer 0: 0.5 * 1280
  EXPECT_EQ(MakeDivisible(934.4, 256), 1024);  // 0.73 * 1280
  EXPECT_EQ(MakeDivisible(10, 256), 256);      // never below the divisor
  EXPECT_EQ(MakeDivisible(100, 64), 128);      // 64 < 0.9 * 100 → bumped
}

TEST(Config, RoundTo2DecimalsLikePython) {
  EXPECT_DOUBLE_EQ(RoundTo2Decimals(0.5333333333), 0.53);
  EXPECT_DOUBLE_EQ(RoundTo2Decimals(2.675), 2.67);  // 2.675 is 2.67499999... in binary
  EXPECT_DOUBLE_EQ(RoundTo2Decimals(0.125), 0.12);  // exact tie → even
  EXPECT_DOUBLE_EQ(RoundTo2Decimals(0.375), 0.38);
}

TEST(Config, PresetParameterCountsMatchSpec) {
  EXPECT_EQ(PresetConfig("OpenELM-270M").ParamCount(), 271527168);
  EXPECT_EQ(PresetConfig("OpenELM-450M").ParamCount(), 457179136);
  EXPECT_EQ(PresetConfig("OpenELM-1_1B").ParamCount(), 1079891456);
  EXPECT_EQ(PresetConfig("OpenELM-3B").ParamCount(), 3036647424);
  EXPECT_THROW(PresetConfig("OpenELM-7B"), Error);
}

TEST(Config, Preset270MPerLayer) {
  const auto c = PresetConfig("270M");
  const int nq[] = {12, 12, 12, 12, 12, 16, 16, 16, 16, 16, 16, 16, 20, 20, 20, 20};
  const int f[] = {768,  1024, 1280, 1536, 1792, 2048, 2560, 2816,
                   3072, 3328, 3584, 3840, 4352, 4608, 4864, 5120};
  ASSERT_EQ(c.n_layers, 16);
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(c.layers[i].n_heads, nq[i]) << i;
    EXPECT_EQ(c.layers[i].n_kv_heads, nq[i] / 4) << i;
    EXPECT_EQ(c.layers[i].ffn_dim, f[i]) << i;
  }
  EXPECT_EQ(c.LayerParams(0), 5409408);
  EXPECT_EQ(c.LayerParams(15), 23759488);
}

TEST(Config, Preset1_1BAnd3BLists) {
  const auto c = PresetConfig("OpenELM-1_1B");
  EXPECT_EQ(c.layers[13].ffn_dim, 4608);  // layers 13 and 14 share a width
  EXPECT_EQ(c.layers[14].ffn_dim, 4608);
  EXPECT_EQ(c.layers[27].n_heads, 32);
  const auto c3 = PresetConfig("OpenELM-3B");
  EXPECT_EQ(c3.layers[0].n_heads, 12);
  EXPECT_EQ(c3.layers[35].n_heads, 24);
  EXPECT_EQ(c3.layers[35].ffn_dim, 12288);
}

TEST(Config, HfJsonRoundTrip) {
  const auto c = PresetConfig("OpenELM-450M");
  const auto back = ConfigFromHfJson(ConfigToHfJson(c), "roundtrip");
  ASSERT_EQ(back.n_layers, c.n_layers);
  for (int i = 0; i < c.n_layers; ++i) {
    EXPECT_EQ(back.layers[i].n_heads, c.layers[i].n_heads);
    EXPECT_EQ(back.layers[i].ffn_dim, c.layers[i].ffn_dim);
  }
  EXPECT_EQ(back.ParamCount(), c.ParamCount());
}

json TinyJson() {
  return json::parse(ReadTextFile(test::DataDir() + "/conformance/a_tiny_qknorm_tied/config.json"));
}

std::string ErrorOf(const json& j) {
  try {
    ConfigFromHfJson(j, "cfg.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Config, InconsistentStoredHeadsNameLayerAndField) {
  json j = TinyJson();
  j["num_query_heads"] = {2, 6};
  const std::string e = ErrorOf(j);
  EXPECT_NE(e.find("layer 1"), std::string::npos) << e;
  EXPECT_NE(e.find("num_query_heads"), std::string::npos) << e;
}

TEST(Config, BadFieldsAreNamed) {
  json j = TinyJson();
  j["model_dim"] = "sixty-four";
  EXPECT_NE(ErrorOf(j).find("model_dim"), std::string::npos);
  j = TinyJson();
  j.erase("head_dim");
  EXPECT_NE(ErrorOf(j).find("head_dim"), std::string::npos);
  j = TinyJson();
  j["ffn_multipliers"] = {1.0, 2.0, 3.0};  // neither a pair nor one per layer
  EXPECT_NE(ErrorOf(j).find("ffn_multipliers"), std::string::npos);
  j = TinyJson();
  j["model_type"] = "llama";
  EXPECT_NE(ErrorOf(j).find("model_type"), std::string::npos);
  j = TinyJson();
  j["num_kv_heads"] = {1};
  EXPECT_NE(ErrorOf(j).find("num_kv_heads"), std::string::npos);
}

TEST(Config, ScalarAndPerLayerMultipliers) {
  json j = TinyJson();
  j["qkv_multipliers"] = 1.0;
  j["ffn_multipliers"] = json::array({1.0, 2.0});
  j.erase("num_query_heads");
  j.erase("num_kv_heads");
  const auto c = ConfigFromHfJson(j, "cfg");
  EXPECT_EQ(c.layers[0].n_heads, 4);
  EXPECT_EQ(c.layers[1].n_heads, 4);
  EXPECT_EQ(c.layers[0].ffn_dim, 64);
  EXPECT_EQ(c.layers[1].ffn_dim, 128);
}

}  // namespace config_test
}  // namespace elm

namespace elm {
namespace config_test {

// Random edits of a valid config.json: ConfigFromHfJson/LoadHfConfig either accept the result or
// throw elm::Error — never another exception, a crash, or an absurd allocation.
TEST(Config, MutationFuzzOnlyThrowsElmError) {
  const std::string src =
      ReadTextFile(test::DataDir() + "/conformance/a_tiny_qknorm_tied/config.json");
  std::mt19937 rng(99);
  const char* junk[] = {"-1", "1e308", "99999999999", "\"x\"", "null",
                        "[]", "{}",    "true",        "0.5",   "7"};
  int errors = 0;
  for (int iter = 0; iter < 2000; ++iter) {
    std::string text = src;
    // Replace a random value (text after a ':' up to the next ',' or newline) with junk, or flip
    // a random byte.
    if (iter % 2 == 0) {
      size_t pos = text.find(':', rng() % text.size());
      if (pos == std::string::npos) continue;
      const size_t end = text.find_first_of(",\n", pos + 1);
      text.replace(pos + 1, end - pos - 1, junk[rng() % 10]);
    } else {
      text[rng() % text.size()] = static_cast<char>(rng() & 0xff);
    }
    try {
      ConfigFromHfJson(nlohmann::json::parse(text), "fuzz.json");
    } catch (const nlohmann::json::parse_error&) {
      // not JSON any more: LoadHfConfig turns this into elm::Error (tested below)
    } catch (const Error&) {
      ++errors;
    }
  }
  EXPECT_GT(errors, 200);
  const std::string dir = test::TempDir("cfgfuzz");
  WriteFileAtomic(dir + "/config.json", "{\"model_dim\": ", 14);
  EXPECT_THROW(LoadHfConfig(dir + "/config.json"), Error);
}

}  // namespace config_test
}  // namespace elm
