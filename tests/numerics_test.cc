// Half-precision and quantized checkpoints (docs/numerics.md): --exact computes what Apple's
// float32 code computes on the stored weights, and the default (fast) path keeps F16 weights' 11
// bits.
//
// The conformance checkpoints are F32. Each is converted here to BF16 and F16 safetensors
// (`elm convert --to hf` with a type: every tensor rounded to nearest even), so the stored weights
// are exactly Apple's weights rounded. Apple's logits belong to the unrounded weights, so the
// oracle is elm's scalar reference path (Session::set_reference, float32 math on the stored
// weights widened exactly; it matches Apple's logits within 1e-6 on the F32 folders,
// tests/conformance_test.cc) run on the *rounded* checkpoint.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/mmap_file.h"
#include "io/convert.h"
#include "model/session.h"
#include "test_util.h"

namespace elm {
namespace numerics_test {
namespace fs = std::filesystem;
using nlohmann::json;

// Every conformance folder, any further one included (tests/test_util.h).
std::vector<std::string> ModelDirs() {
  return test::ConformanceFolders("numerics");
}

// Logits of a prefill over `tokens` (all rows) followed by `steps` single-token decoding steps
// through the KV cache (feeding tokens[0..steps) again), concatenated.
std::vector<float> RunLogits(const std::shared_ptr<const Model>& m, const std::vector<int>& tokens,
                             int steps, bool reference) {
  Session s(m, static_cast<int>(tokens.size()) + steps);
  s.set_reference(reference);
  std::vector<float> logits, out;
  ForwardOptions all;
  all.all_logits = true;
  s.Forward(tokens, logits, all);
  out = logits;
  for (int i = 0; i < steps; ++i) {
    s.Forward(std::span<const int>(&tokens[static_cast<size_t>(i)], 1), logits);
    out.insert(out.end(), logits.begin(), logits.end());
  }
  return out;
}

float MaxAbs(const std::vector<float>& v) {
  float m = 0;
  for (float x : v) m = std::max(m, std::fabs(x));
  return m;
}

// Mean KL(ref ‖ got) per row (nats) and the fraction of rows with the same argmax.
std::pair<double, double> KlTop1(const std::vector<float>& got, const std::vector<float>& ref,
                                 int V) {
  const size_t rows = ref.size() / static_cast<size_t>(V);
  double kl = 0;
  int agree = 0;
  for (size_t r = 0; r < rows; ++r) {
    const float* a = ref.data() + r * V;
    const float* b = got.data() + r * V;
    const double ma = *std::max_element(a, a + V), mb = *std::max_element(b, b + V);
    double sa = 0, sb = 0;
    for (int i = 0; i < V; ++i) {
      sa += std::exp(a[i] - ma);
      sb += std::exp(b[i] - mb);
    }
    const double la = ma + std::log(sa), lb = mb + std::log(sb);
    for (int i = 0; i < V; ++i) {
      const double pa = a[i] - la, pb = b[i] - lb;
      kl += std::exp(pa) * (pa - pb);
    }
    agree += (std::max_element(a, a + V) - a) == (std::max_element(b, b + V) - b);
  }
  return {kl / static_cast<double>(rows), static_cast<double>(agree) / static_cast<double>(rows)};
}

class Numerics : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = test::TempDir("numerics"); }
  void TearDown() override { fs::remove_all(dir_); }
  // `src` written as an HF folder with every tensor in `type`.
  std::string Rounded(const std::string& src, DType type) {
    const std::string out =
        dir_ + "/" + fs::path(src).filename().string() + "_" + std::string(DTypeName(type));
    ConvertOptions o;
    o.to = "hf";
    o.output = out;
    o.type = type;
    ConvertModel(OpenModelSource(src), o);
    return out;
  }
  std::string dir_;
};

// --exact on BF16- and F16-stored checkpoints: within 1e-4 · max(1, max|logit|) of float32 math on
// the same weights, prefill and decoding alike; F16 on the default path too (its weights are never
// rounded to bf16). BF16 on the default path rounds activations to bf16: judged by KL and top-1.
TEST_F(Numerics, HalfPrecisionCheckpointsExact) {
  for (const auto& src : ModelDirs()) {
    const auto tokens = test::LongestSequenceTokens(src);
    for (DType type : {DType::kBF16, DType::kF16}) {
      const std::string name = fs::path(src).filename().string() + " " + DTypeName(type);
      SCOPED_TRACE(name);
      const std::string path = Rounded(src, type);
      LoadOptions exact_opt;
      exact_opt.exact = true;
      const auto fast = Model::Load(path);
      const auto exact = Model::Load(path, exact_opt);
      EXPECT_EQ(fast->weights_dtype(), DTypeName(type));
      ASSERT_TRUE(exact->exact());
      const auto ref = RunLogits(fast, tokens, 4, /*reference=*/true);
      const float tol = 1e-4f * std::max(1.0f, MaxAbs(ref));
      const auto got_exact = RunLogits(exact, tokens, 4, false);
      const float err_exact = test::MaxAbsDiff(got_exact.data(), ref.data(), ref.size());
      EXPECT_LE(err_exact, tol) << "--exact";
      const auto got_fast = RunLogits(fast, tokens, 4, false);
      const float err_fast = test::MaxAbsDiff(got_fast.data(), ref.data(), ref.size());
      const auto [kl, top1] = KlTop1(got_fast, ref, fast->config().vocab_size);
      if (type == DType::kF16) {
        EXPECT_LE(err_fast, tol) << "default path, F16";
      } else {
        // Measured on these folders (AVX-512): mean KL ≤ 3.5e-6, top-1 ≥ 95.6% (docs/numerics.md).
        EXPECT_LE(kl, 1e-4) << "default path, BF16";
        EXPECT_GE(top1, 0.9) << "default path, BF16";
      }
      std::printf(
          "[numerics] %-32s exact max|err| %.2g | default max|err| %.2g, KL %.2g, top-1 %.1f%% "
          "(max|logit| %.2f)\n",
          name.c_str(), err_exact, err_fast, kl, 100 * top1, MaxAbs(ref));
    }
  }
}

// Session::set_exact overrides the model's setting; --exact on Q8_0/Q4_0 weights (packed for the
// kernels) is float32 math on the dequantized weights.
TEST_F(Numerics, ExactQuantizedWeightsAndSessionSwitch) {
  const std::string src = test::DataDir() + "/conformance/a_tiny_qknorm_tied";
  const auto tokens = test::LongestSequenceTokens(src);
  for (DType type : {DType::kQ8_0, DType::kQ4_0}) {
    SCOPED_TRACE(DTypeName(type));
    LoadOptions lo;
    lo.weights = type;
    const auto m = Model::Load(src, lo);
    EXPECT_FALSE(m->exact());
    const auto ref = RunLogits(m, tokens, 3, /*reference=*/true);
    Session s(m);
    EXPECT_FALSE(s.exact());
    s.set_exact(true);
    std::vector<float> logits;
    ForwardOptions all;
    all.all_logits = true;
    s.Forward(tokens, logits, all);
    const size_t n = logits.size();
    EXPECT_LE(test::MaxAbsDiff(logits.data(), ref.data(), n), 1e-4f * std::max(1.0f, MaxAbs(ref)));
    // The default path quantizes activations: visibly different from the reference.
    const auto fast = RunLogits(m, tokens, 0, false);
    EXPECT_GT(test::MaxAbsDiff(fast.data(), ref.data(), n), 1e-4f * std::max(1.0f, MaxAbs(ref)));
  }
}

// The CLI: --exact reaches the model (logits; bench and perplexity report it; generate takes it),
// and elm kld measures the kernels'
// error alone with --base-weights f32 on a half-precision file.
TEST_F(Numerics, CommandLine) {
  const std::string src = test::DataDir() + "/conformance/a_tiny_qknorm_tied";
  const std::string bf16 = Rounded(src, DType::kBF16);
  const std::string ids = "1,17,42,99,3,250,7,8,200,11";
  std::string out, err;
  for (const char* mode : {"--exact", "--reference", ""})
    ASSERT_EQ(test::RunElm("logits --model " + bf16 + " --ids " + ids + " " + mode + " --output " +
                               dir_ + "/l" + (mode[0] ? mode + 2 : "fast") + ".bin",
                           &out, &err),
              0)
        << err;
  const size_t n = 10 * 256;
  const auto exact = test::ReadFloats(dir_ + "/lexact.bin", 0, n);
  const auto ref = test::ReadFloats(dir_ + "/lreference.bin", 0, n);
  const auto fast = test::ReadFloats(dir_ + "/lfast.bin", 0, n);
  const float tol = 1e-4f * std::max(1.0f, MaxAbs(ref));
  EXPECT_LE(test::MaxAbsDiff(exact.data(), ref.data(), n), tol);
  EXPECT_GT(test::MaxAbsDiff(fast.data(), ref.data(), n), tol);  // bf16 activations

  ASSERT_EQ(test::RunElm("bench --model " + bf16 + " --exact -p 8 -n 2 -r 1 --bandwidth 10 --json",
                         &out, &err),
            0)
      << err;
  EXPECT_TRUE(json::parse(out)["exact"].get<bool>()) << out;
  ASSERT_EQ(test::RunElm("generate --model " + bf16 + " --ids " + ids +
                             " --exact --temperature 0 -n 4 --output-ids",
                         &out, &err),
            0)
      << err;
  const std::string tiny = std::string(ELM_SOURCE_DIR) + "/models/tiny-random-32k";
  const std::string words = "The quick brown fox jumps over the lazy dog while the cat sleeps. ";
  std::string all;
  for (int i = 0; i < 8; ++i) all += words;
  const std::string text = dir_ + "/text.txt";
  WriteFileAtomic(text, all.data(), all.size());
  ASSERT_EQ(test::RunElm("perplexity --model " + tiny + " --file " + text + " --exact --output " +
                             dir_ + "/ppl.json",
                         &out, &err),
            0)
      << err;
  EXPECT_TRUE(json::parse(ReadTextFile(dir_ + "/ppl.json"))["config"]["exact"].get<bool>());

  const std::string shared = test::SharedConformanceDir();
  if (shared.empty()) {
    std::printf("[numerics] ../shared/conformance not found: elm kld check skipped\n");
    return;
  }
  const std::string p16 = Rounded(shared + "/p_small_vocab32k", DType::kF16);
  for (const char* mode : {"", "--exact"}) {
    ASSERT_EQ(test::RunElm("kld --model " + p16 + " --base-weights f32 --weights f16 " + mode +
                               " --file " + text + " --context 64",
                           &out, &err),
              0)
        << err;
    EXPECT_NE(out.find("max |logit difference|"), std::string::npos) << out;
    EXPECT_NE(out.find("top-1 agreement 100.00%"), std::string::npos) << out;
  }
}

}  // namespace numerics_test
}  // namespace elm
