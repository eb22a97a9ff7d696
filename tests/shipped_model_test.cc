// The model elm ships (models/openelm-shakespeare, made by scripts/train_shipped_model.sh): its
// held-out perplexity, computed as `elm perplexity` does, and a greedy generation must match the
// numbers the script pinned in its expected.json. Skips while the folder holds no model.
// ELM_SHIPPED_MODEL_DIR points the test at another folder (e.g. a candidate before it is copied).
#include <gtest/gtest.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/mmap_file.h"
#include "eval/loglikelihood.h"
#include "eval/perplexity.h"
#include "generation/generator.h"
#include "io/model_tokenizer.h"
#include "model/session.h"
#include "sampling/sampler.h"
#include "tokenizer/tokenizer.h"

namespace elm {
namespace shipped_model_test {

namespace fs = std::filesystem;
using nlohmann::json;

std::string ModelDir() {
  if (const char* dir = std::getenv("ELM_SHIPPED_MODEL_DIR"); dir && *dir) return dir;
  return std::string(ELM_SOURCE_DIR) + "/models/openelm-shakespeare";
}

class ShippedModel : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ModelDir();
    for (const char* f : {"config.json", "model.safetensors", "expected.json"})
      if (!fs::exists(fs::path(dir_) / f))
        GTEST_SKIP() << dir_ << "/" << f
                     << " not found: the shipped model is absent (make it with "
                        "scripts/train_shipped_model.sh); skipped";
    expected_ = json::parse(ReadTextFile(dir_ + "/expected.json"));
    model_ = Model::Load(dir_);
#ifdef _OPENMP
    // One thread: with other processes on the cores (ctest -j, a training run), spinning OpenMP
    // teams make these small forwards 100x slower (15 s instead of 0.1 s for the generation);
    // the results do not depend on the thread count.
    saved_threads_ = omp_get_max_threads();
    omp_set_num_threads(1);
#endif
  }
  void TearDown() override {
#ifdef _OPENMP
    if (saved_threads_ > 0) omp_set_num_threads(saved_threads_);
#endif
  }

  int saved_threads_ = 0;
  std::string dir_;
  json expected_;
  std::shared_ptr<const Model> model_;
};

TEST_F(ShippedModel, FitsTheSizeBudget) {
  // Issue #9: at most 40 MB on disk in BF16.
  EXPECT_LE(fs::file_size(fs::path(dir_) / "model.safetensors"), 40u * 1000 * 1000);
  EXPECT_EQ(model_->config().vocab_size, 32000);
}

TEST_F(ShippedModel, HeldOutPerplexityMatches) {
  // The same computation as `elm perplexity --model DIR --file F` (tools/elm/cmd_eval.cc), on a
  // bounded slice at the end of the corpus, inside the validation split the trainer held out.
  const json& p = expected_.at("perplexity");
  const std::string file = std::string(ELM_SOURCE_DIR) + "/" + p.at("file").get<std::string>();
  const std::string corpus = ReadTextFile(file);
  const auto offset = p.at("offset").get<size_t>(), bytes = p.at("bytes").get<size_t>();
  ASSERT_EQ(offset + bytes, corpus.size())
      << file << " changed since expected.json was written; rerun scripts/train_shipped_model.sh";
  const std::string text = corpus.substr(offset, bytes);

  const Tokenizer tok = LoadTokenizerFor(dir_, "");
  eval::LoglikelihoodScorer scorer(model_);
  eval::PerplexityOptions opt;
  opt.stride = p.at("stride").get<int>();
  opt.add_bos = p.at("add_bos").get<bool>();
  const eval::PerplexityResult r = eval::RollingPerplexity(scorer, tok, text, opt);

  EXPECT_EQ(r.scored_tokens, p.at("scored_tokens").get<int64_t>());
  const double want = p.at("token_perplexity").get<double>();
  EXPECT_NEAR(r.token_perplexity(), want, 0.01 * want)
      << "held-out token perplexity of " << dir_ << " over " << r.scored_tokens << " tokens";
}

TEST_F(ShippedModel, GreedyGenerationMatches) {
  // `elm generate --model DIR --prompt P --temperature 0 --max-new-tokens N --output-ids`.
  const json& g = expected_.at("greedy");
  const Tokenizer tok = LoadTokenizerFor(dir_, "");
  const std::vector<int> prompt = tok.Encode(g.at("prompt").get<std::string>(), tok.add_bos());
  GenerateOptions go;
  go.max_new_tokens = g.at("max_new_tokens").get<int>();
  go.stop_at_eos = true;
  go.sampling.temperature = 0;
  Sampler sampler(go.sampling);
  Session session(model_);
  const GenerateResult r = Generate(session, prompt, go, sampler);
  EXPECT_EQ(r.ids, g.at("ids").get<std::vector<int>>())
      << "greedy continuation of \"" << g.at("prompt").get<std::string>()
      << "\": " << tok.Decode(r.ids);
}

}  // namespace shipped_model_test
}  // namespace elm
