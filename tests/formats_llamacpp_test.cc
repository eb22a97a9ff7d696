// The GGUF files llama.cpp wrote for p_small_vocab32k (../shared/conformance/gguf): elm loads them
// with the logits of the safetensors source, rebuilds the config and tokenizer from their
// metadata, and writes the same keys, tensor names, order and tokenizer arrays itself.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <span>

#include "base/mmap_file.h"
#include "config/hf_config.h"
#include "io/convert.h"
#include "io/gguf.h"
#include "io/gguf_model.h"
#include "io/gguf_tokenizer.h"
#include "io/model_tokenizer.h"
#include "model/session.h"
#include "test_util.h"

namespace elm {
namespace formats_llamacpp_test {
namespace fs = std::filesystem;
using nlohmann::json;

struct Files {
  std::string f32, q8, source;
};

// Empty paths when ../shared/conformance/gguf is not there.
Files Find() {
  const fs::path dir = fs::path(ELM_SOURCE_DIR "/../shared/conformance/gguf");
  Files f;
  if (!fs::exists(dir / "p_small_vocab32k.llamacpp-f32.gguf")) return f;
  f.f32 = (dir / "p_small_vocab32k.llamacpp-f32.gguf").string();
  f.q8 = (dir / "p_small_vocab32k.llamacpp-q8_0.gguf").string();
  f.source = (dir.parent_path() / "p_small_vocab32k").string();
  return f;
}

#define REQUIRE_FILES(f)  \
  const Files f = Find(); \
  if (f.f32.empty()) GTEST_SKIP() << "../shared/conformance/gguf not found: skipped"

// The README's prompt: "ROMEO: But soft" with BOS, and llama.cpp's greedy continuation.
const std::vector<int> kPrompt = {1, 16641, 2303, 29949, 29901, 1205, 4964};
const std::vector<int> kLlamaCppGreedy = {31834, 17005, 24602, 25619, 8417,  2813,
                                          2107,  23700, 8417,  10703, 23700, 25777};

std::vector<int> Greedy(const std::shared_ptr<const Model>& m, std::vector<int> ids, int n) {
  Session s(m, static_cast<int>(ids.size()) + n);
  std::vector<float> logits;
  s.Forward(ids, logits);
  std::vector<int> out;
  for (int k = 0; k < n; ++k) {
    const int id =
        static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(id);
    s.Forward(std::span<const int>(&out.back(), 1), logits);
  }
  return out;
}

TEST(LlamaCppGguf, ConfigRebuiltFromMetadata) {
  REQUIRE_FILES(f);
  const GgufFile g(f.f32);
  ASSERT_EQ(g.Find(kGgufHfConfigKey), nullptr) << "llama.cpp's files carry no elm config";
  const ModelConfig c = HfConfigFromGguf(g);
  const ModelConfig ref = LoadHfConfig(f.source + "/config.json");
  EXPECT_EQ(c.qkv_multipliers, (std::vector<double>{0.5, 1.0}));
  EXPECT_EQ(c.gqa_groups, ref.gqa_groups);
  EXPECT_EQ(c.tied_embeddings, ref.tied_embeddings);
  EXPECT_EQ(c.qk_norm, ref.qk_norm);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-6f);
  ASSERT_EQ(c.n_layers, ref.n_layers);
  for (int i = 0; i < c.n_layers; ++i) {
    EXPECT_EQ(c.layers[i].n_heads, ref.layers[i].n_heads);
    EXPECT_EQ(c.layers[i].n_kv_heads, ref.layers[i].n_kv_heads);
    EXPECT_EQ(c.layers[i].ffn_dim, ref.layers[i].ffn_dim);
  }
  // The rebuilt config.json is one HF accepts and elm reads back to the same layers.
  const ModelConfig again = ConfigFromHfJson(ConfigToHfJson(c), "rebuilt");
  for (int i = 0; i < c.n_layers; ++i) EXPECT_EQ(again.layers[i].ffn_dim, ref.layers[i].ffn_dim);
}

TEST(LlamaCppGguf, SameLogitsAsTheSafetensorsSource) {
  REQUIRE_FILES(f);
  const json v = json::parse(ReadTextFile(f.source + "/vectors.json"));
  auto hf = Model::Load(f.source);
  auto gg = Model::Load(f.f32);
  auto q8 = Model::Load(f.q8);
  EXPECT_EQ(gg->weights_dtype(), "F32");
  EXPECT_EQ(q8->weights_dtype(), "Q8_0");
  // elm's own q8_0 of the same weights.
  const std::string dir = test::TempDir("llamacpp");
  ConvertOptions o;
  o.to = "gguf";
  o.output = dir + "/elm-q8_0.gguf";
  o.type = DType::kQ8_0;
  ConvertModel(OpenModelSource(f.source), o);
  auto elm_q8 = Model::Load(o.output);
  const int V = hf->config().vocab_size;
  float worst_f32 = 0, worst_q8 = 0, worst_q8_vs_elm = 0, worst_elm_q8 = 0;
  for (const auto& seq : v["sequences"]) {
    const auto tokens = seq["tokens"].get<std::vector<int>>();
    const auto ref =
        test::ReadFloats(f.source + "/logits.bin", seq["logits_offset_bytes"].get<uint64_t>(),
                         tokens.size() * static_cast<uint64_t>(V));
    const float scale = std::max(1.0f, seq["logits_abs_max"].get<float>());
    const auto a = test::AllLogits(gg, tokens);
    const auto b = test::AllLogits(hf, tokens);
    const auto c = test::AllLogits(q8, tokens);
    const auto d = test::AllLogits(elm_q8, tokens);
    const float e32 = test::MaxAbsDiff(a.data(), ref.data(), ref.size());
    EXPECT_LE(e32, 1e-4f * scale) << seq["name"];
    EXPECT_EQ(test::MaxAbsDiff(a.data(), b.data(), b.size()), 0.0f) << "GGUF f32 vs safetensors";
    // docs/formats.md: Q8_0 within 0.1 x max(1, max|logit|) of the f32 reference; llama.cpp's
    // and elm's Q8_0 of the same weights agree to the bit (checked below), hence in logits.
    const float eq8 = test::MaxAbsDiff(c.data(), ref.data(), ref.size());
    EXPECT_LE(eq8, 0.1f * scale) << seq["name"];
    const float eq8e = test::MaxAbsDiff(c.data(), d.data(), d.size());
    EXPECT_LE(eq8e, 1e-6f * scale) << seq["name"];
    worst_f32 = std::max(worst_f32, e32);
    worst_q8 = std::max(worst_q8, eq8);
    worst_q8_vs_elm = std::max(worst_q8_vs_elm, eq8e);
    worst_elm_q8 = std::max(worst_elm_q8, test::MaxAbsDiff(d.data(), ref.data(), ref.size()));
  }
  std::printf(
      "[llama.cpp gguf] logits max|err| vs reference: f32 %.3g, llama.cpp q8_0 %.3g, "
      "elm q8_0 %.3g; llama.cpp q8_0 vs elm q8_0 %.3g\n",
      worst_f32, worst_q8, worst_elm_q8, worst_q8_vs_elm);

  // Quantized blocks: elm's Q8_0 is llama.cpp's reference quantizer; llama-quantize's SIMD path
  // rounds exact halves to even, so a few int8 values may differ by one.
  const GgufFile lq(f.q8), eq(o.output);
  size_t values = 0, differ = 0, scales_differ = 0;
  for (const auto& t : lq.tensors()) {
    const GgufTensorInfo& u = eq.GetTensor(t.name);
    ASSERT_EQ(t.ggml_type, u.ggml_type) << t.name;
    ASSERT_EQ(t.nbytes, u.nbytes) << t.name;
    if (t.ggml_type != 8) {
      EXPECT_EQ(std::memcmp(t.data, u.data, t.nbytes), 0) << t.name;
      continue;
    }
    for (size_t blk = 0; blk < t.nbytes / 34; ++blk) {
      const uint8_t* a = t.data + blk * 34;
      const uint8_t* b = u.data + blk * 34;
      scales_differ += std::memcmp(a, b, 2) != 0;
      for (int i = 2; i < 34; ++i) {
        ++values;
        if (a[i] != b[i]) {
          ++differ;
          EXPECT_LE(std::abs(static_cast<int8_t>(a[i]) - static_cast<int8_t>(b[i])), 1);
        }
      }
    }
  }
  std::printf("[llama.cpp gguf] q8_0 blocks: %zu of %zu int8 values differ (by 1), %zu scales\n",
              differ, values, scales_differ);
  EXPECT_EQ(scales_differ, 0u);
  EXPECT_LE(differ, values / 1000);
  fs::remove_all(dir);
}

TEST(LlamaCppGguf, GreedyMatchesLlamaCpp) {
  REQUIRE_FILES(f);
  EXPECT_EQ(Greedy(Model::Load(f.f32), kPrompt, 12), kLlamaCppGreedy);
  const auto tok = TokenizerFromGguf(f.f32);
  ASSERT_TRUE(tok.has_value());
  EXPECT_EQ(tok->Encode("ROMEO: But soft", tok->add_bos()), kPrompt);
  std::string out, err;
  ASSERT_EQ(test::RunElm("generate --model " + f.f32 +
                             " --prompt 'ROMEO: But soft' -n 12 --temperature 0 --output-ids",
                         &out, &err),
            0)
      << err;
  for (int id : kLlamaCppGreedy) EXPECT_NE(out.find(std::to_string(id)), std::string::npos) << out;
}

TEST(LlamaCppGguf, ElmWritesTheSameLayout) {
  REQUIRE_FILES(f);
  const std::string dir = test::TempDir("llamacpp_layout");
  ConvertOptions o;
  o.to = "gguf";
  o.output = dir + "/elm-f32.gguf";
  o.type = DType::kF32;
  ConvertModel(OpenModelSource(f.source), o);
  const GgufFile ref(f.f32), got(o.output);
  // Keys: the same set in the same order with the same values, except the name (elm uses the
  // folder name), elm's extra config key, and the chat template elm adds where the source has
  // none (llama.cpp's converter copies one only from the HF tokenizer; docs/formats.md).
  std::vector<std::string> ref_keys, got_keys;
  for (const auto& [k, v] : ref.metadata()) ref_keys.push_back(k);
  for (const auto& [k, v] : got.metadata())
    if (k != kGgufHfConfigKey && k != "tokenizer.chat_template") got_keys.push_back(k);
  EXPECT_NE(got.Find("tokenizer.chat_template"), nullptr);
  EXPECT_EQ(got_keys, ref_keys);
  for (const auto& [k, v] : ref.metadata()) {
    if (k == "general.name") continue;
    const GgufValue* g = got.Find(k);
    ASSERT_NE(g, nullptr) << k;
    EXPECT_EQ(g->type, v.type) << k;
    EXPECT_EQ(g->ToString(1u << 20), v.ToString(1u << 20)) << k;
  }
  // Tensors: names, order, types, dims, offsets and bytes.
  ASSERT_EQ(got.tensors().size(), ref.tensors().size());
  for (size_t i = 0; i < ref.tensors().size(); ++i) {
    const auto& a = ref.tensors()[i];
    const auto& b = got.tensors()[i];
    EXPECT_EQ(b.name, a.name);
    EXPECT_EQ(b.ne, a.ne) << a.name;
    EXPECT_EQ(b.ggml_type, a.ggml_type) << a.name;
    EXPECT_EQ(b.offset, a.offset) << a.name;
    ASSERT_EQ(b.nbytes, a.nbytes) << a.name;
    EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes), 0) << a.name;
  }
  EXPECT_EQ(got.data_offset() % 32, 0u);
  fs::remove_all(dir);
}

TEST(LlamaCppGguf, TokenizerRebuiltExactly) {
  REQUIRE_FILES(f);
  const GgufFile g(f.f32);
  const auto vocab = VocabFromGguf(g);
  ASSERT_TRUE(vocab.has_value());
  // elm's reading of the built-in tokenizer gives llama.cpp's arrays exactly.
  const GgufVocab mine = VocabFromTokenizer(Tokenizer::Default());
  EXPECT_EQ(mine.tokens, vocab->tokens);
  EXPECT_EQ(mine.scores, vocab->scores);
  EXPECT_EQ(mine.types, vocab->types);
  EXPECT_EQ(mine.bos, vocab->bos);
  EXPECT_EQ(mine.eos, vocab->eos);
  EXPECT_EQ(mine.unk, vocab->unk);
  // The tokenizer.json rebuilt from the GGUF arrays has HF's merges, in HF's order.
  const json rebuilt = json::parse(TokenizerJsonFromVocab(*vocab));
  const json hf = json::parse(ReadTextFile(ELM_SOURCE_DIR "/data/tokenizer/llama2/tokenizer.json"));
  EXPECT_EQ(rebuilt["model"]["merges"], hf["model"]["merges"]);
  EXPECT_EQ(rebuilt["model"]["vocab"], hf["model"]["vocab"]);
  const Tokenizer t = Tokenizer::FromJson(TokenizerJsonFromVocab(*vocab), "rebuilt",
                                          TokenizerConfigJsonFromVocab(*vocab));
  const Tokenizer d = Tokenizer::Default();
  for (const char* text :
       {"ROMEO: But soft, what light through yonder window breaks?",
        "  two  spaces\tand\nnewlines ", "naïve café 東京 🙂", "<s> literal"}) {
    EXPECT_EQ(t.Encode(text, true), d.Encode(text, true)) << text;
    EXPECT_EQ(t.Decode(d.Encode(text, false)), d.Decode(d.Encode(text, false))) << text;
  }
  EXPECT_EQ(t.add_bos(), d.add_bos());
}

TEST(LlamaCppGguf, ConvertsToHfAndMlx) {
  REQUIRE_FILES(f);
  const std::string dir = test::TempDir("llamacpp_conv");
  for (const char* to : {"hf", "mlx"}) {
    ConvertOptions o;
    o.to = to;
    o.output = dir + "/" + to;
    ConvertModel(OpenModelSource(f.f32), o);
    EXPECT_TRUE(fs::exists(o.output + "/tokenizer.json")) << to;
    const auto a = test::AllLogits(Model::Load(o.output), kPrompt);
    const auto b = test::AllLogits(Model::Load(f.source), kPrompt);
    EXPECT_EQ(test::MaxAbsDiff(a.data(), b.data(), a.size()), 0.0f) << to;
    EXPECT_EQ(LoadTokenizerFor(o.output, "").Encode("ROMEO: But soft", true), kPrompt);
  }
  // The HF tensors are the source's, bit for bit.
  const TensorStore src(f.source), back(dir + "/hf");
  for (const auto& [name, v] : src.all()) {
    const TensorView* w = back.Find(name);
    ASSERT_NE(w, nullptr) << name;
    ASSERT_EQ(w->nbytes, v->nbytes);
    EXPECT_EQ(std::memcmp(w->data, v->data, v->nbytes), 0) << name;
  }
  fs::remove_all(dir);
}

}  // namespace formats_llamacpp_test
}  // namespace elm
