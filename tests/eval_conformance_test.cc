// Parity with lm-evaluation-harness (HFLM, add_bos_token=True, zero-shot) on the eval vectors
// of a conformance checkpoint: request strings and token ids exactly, log-likelihoods within
// 1e-3, is_greedy and accuracies exactly, rolling perplexity windows exactly and their nll within
// 1e-3. Folders are discovered at run time from $ELM_EVAL_CONFORMANCE_DIR (colon-separated), by
// default ../shared/conformance/eval when present; each names its checkpoint folder, found at
// ../../<name> beside it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <tuple>

#include "base/mmap_file.h"
#include "eval/evaluator.h"
#include "eval/loglikelihood_batch.h"
#include "eval/perplexity.h"
#include "io/model_tokenizer.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace elm::eval {
namespace eval_conformance_test {
namespace fs = std::filesystem;
using nlohmann::json;

struct Folder {
  std::string path, name, model_dir;
  json summary;
};

std::vector<std::string> Roots() {
  std::vector<std::string> roots;
  if (test::RootsFromEnv("ELM_EVAL_CONFORMANCE_DIR", &roots)) return roots;
  const fs::path shared = fs::path(ELM_SOURCE_DIR).parent_path() / "shared/conformance/eval";
  if (fs::is_directory(shared)) roots.push_back(shared.string());
  return roots;
}

std::vector<Folder> Discover() {
  std::vector<Folder> out;
  for (const auto& root : Roots()) {
    std::vector<fs::path> dirs;
    if (fs::exists(fs::path(root) / "summary.json")) dirs.push_back(root);
    if (fs::is_directory(root))
      for (const auto& e : fs::directory_iterator(root))
        if (e.is_directory() && fs::exists(e.path() / "summary.json")) dirs.push_back(e.path());
    std::sort(dirs.begin(), dirs.end());
    for (const auto& d : dirs) {
      Folder f;
      f.path = d.string();
      f.name = d.filename().string();
      f.summary = json::parse(ReadTextFile((d / "summary.json").string()));
      // The checkpoint: ../../<name>, else the first word of summary.json's "model".
      fs::path model = d / ".." / ".." / f.name;
      if (!fs::exists(model / "config.json") && f.summary.contains("model")) {
        std::stringstream ss(f.summary["model"].get<std::string>());
        std::string rel;
        ss >> rel;
        model = d / rel;
      }
      f.model_dir = fs::weakly_canonical(model).string();
      out.push_back(std::move(f));
    }
  }
  return out;
}

const std::vector<Folder>& Folders() {
  static const std::vector<Folder> folders = Discover();
  return folders;
}

#define SKIP_WITHOUT_FOLDERS()                                                        \
  if (Folders().empty())                                                              \
  GTEST_SKIP() << "no eval conformance folders (set ELM_EVAL_CONFORMANCE_DIR or put " \
                  "../shared/conformance/eval beside the repository)"

std::vector<json> ReadJsonl(const std::string& path) {
  std::vector<json> rows;
  std::stringstream ss(ReadTextFile(path));
  for (std::string line; std::getline(ss, line);)
    if (!line.empty()) rows.push_back(json::parse(line));
  return rows;
}

const std::string kData = std::string(ELM_SOURCE_DIR) + "/data/eval";

// The docs of each task, from the repository's own copies of the data.
const std::vector<Doc>& Docs(const std::string& task) {
  static std::map<std::string, std::vector<Doc>> cache;
  auto it = cache.find(task);
  if (it == cache.end()) {
    const TaskInfo& t = FindTask(task);
    it = cache.emplace(task, LoadDocs(t, TaskDataPath(t, {kData, ""}))).first;
  }
  return it->second;
}

int MaxLength(const Folder& f) {
  return f.summary["harness_semantics"]["max_length"].get<int>();
}

// The lm-eval HFLM tokenizer for these vectors: the Llama-2 tokenizer with BOS.
const Tokenizer& Tok(const Folder& f) {
  static std::map<std::string, Tokenizer> cache;
  auto it = cache.find(f.model_dir);
  if (it == cache.end()) it = cache.emplace(f.model_dir, LoadTokenizerFor(f.model_dir, "")).first;
  return it->second;
}

// Each doc is scored once through the library's ScoreDoc and shared by the request-level and
// doc-level checks (the scorer is the expensive part).
struct ScoredDoc {
  DocResult result;
  std::vector<EncodedRequest> encoded;
  std::vector<RequestScore> scores;
};

const ScoredDoc& Scored(const Folder& f, const std::string& task, int doc_index) {
  static std::map<std::string, std::unique_ptr<LoglikelihoodScorer>> scorers;
  static std::map<std::tuple<std::string, std::string, int>, ScoredDoc> done;
  const auto key = std::make_tuple(f.path, task, doc_index);
  if (auto it = done.find(key); it != done.end()) return it->second;
  auto& scorer = scorers[f.path];
  if (!scorer)
    scorer = std::make_unique<LoglikelihoodScorer>(Model::Load(f.model_dir), MaxLength(f));
  const bool add_bos = f.summary["harness_semantics"].value("add_bos_token", true);
  ScoredDoc sd;
  sd.result = ScoreDoc(*scorer, Tok(f), FindTask(task), Docs(task).at(doc_index), add_bos,
                       [&](const RequestRecord& r) {
                         sd.encoded.push_back(*r.encoded);
                         sd.scores.push_back(*r.score);
                       });
  return done.emplace(key, std::move(sd)).first->second;
}

float MaxLogprobError(const RequestScore& s, const json& ref) {
  const auto want = ref.get<std::vector<float>>();
  if (want.size() != s.token_logprobs.size()) return INFINITY;
  float err = 0;
  for (size_t j = 0; j < want.size(); ++j)
    err = std::max(err, std::fabs(want[j] - s.token_logprobs[j]));
  return err;
}

TEST(EvalConformance, FoldersFound) {
  if (Folders().empty()) {
    std::printf("[eval-conformance] no folders found: parity tests skipped\n");
    GTEST_SKIP();
  }
  for (const auto& f : Folders()) {
    std::printf("[eval-conformance] %s (%s), checkpoint %s\n", f.name.c_str(), f.path.c_str(),
                f.model_dir.c_str());
    EXPECT_TRUE(fs::exists(f.model_dir + "/config.json")) << f.model_dir;
  }
}

TEST(EvalConformance, Requests) {
  SKIP_WITHOUT_FOLDERS();
  for (const auto& f : Folders()) {
    SCOPED_TRACE(f.name);
    double worst = 0;
    int n = 0, ids_ok = 0;
    for (const auto& r : ReadJsonl(f.path + "/requests.jsonl")) {
      const std::string task = r["task"];
      const int di = r["doc_index"], ci = r["choice_index"];
      SCOPED_TRACE(task + " doc " + std::to_string(di) + " choice " + std::to_string(ci));
      ASSERT_LT(di, static_cast<int>(Docs(task).size()));
      const Doc& doc = Docs(task)[di];
      if (doc.gold >= 0) {  // LAMBADA has none
        EXPECT_EQ(doc.gold, r["gold"].get<int>());
      }
      const ScoredDoc& sd = Scored(f, task, di);
      ASSERT_LT(ci, static_cast<int>(sd.encoded.size()));
      const EncodedRequest& enc = sd.encoded[ci];
      const RequestScore& s = sd.scores[ci];
      EXPECT_EQ(enc.context, r["context"].get<std::string>());
      EXPECT_EQ(enc.continuation, r["continuation"].get<std::string>());
      const bool same_ids = enc.context_ids == r["context_ids"].get<std::vector<int>>() &&
                            enc.continuation_ids == r["continuation_ids"].get<std::vector<int>>();
      EXPECT_TRUE(same_ids) << "token ids differ";
      ids_ok += same_ids ? 1 : 0;
      const double err = std::fabs(s.loglikelihood - r["loglikelihood"].get<double>());
      EXPECT_LE(err, 1e-3);
      EXPECT_LE(MaxLogprobError(s, r["token_logprobs"]), 1e-3f);
      EXPECT_EQ(s.is_greedy, r["is_greedy"].get<bool>());
      worst = std::max(worst, err);
      ++n;
    }
    std::printf("[eval-conformance] %-20s %d requests, token ids equal on %d, max |ll err| %.3g\n",
                f.name.c_str(), n, ids_ok, worst);
  }
}

TEST(EvalConformance, TaskAccuracies) {
  SKIP_WITHOUT_FOLDERS();
  for (const auto& f : Folders()) {
    SCOPED_TRACE(f.name);
    for (const auto& [task, ref] : f.summary["tasks"].items()) {
      SCOPED_TRACE(task);
      const TaskInfo& info = FindTask(task);
      std::vector<DocResult> results;
      double worst = 0;
      for (const auto& rd : ref["docs"]) {
        const int di = rd["doc_index"];
        SCOPED_TRACE("doc " + std::to_string(di));
        const DocResult& d = Scored(f, task, di).result;
        if (info.kind == TaskKind::kMultipleChoice) {
          const auto lls = rd["lls"].get<std::vector<double>>();
          ASSERT_EQ(d.lls.size(), lls.size());
          for (size_t k = 0; k < lls.size(); ++k)
            worst = std::max(worst, std::fabs(d.lls[k] - lls[k]));
          EXPECT_EQ(d.gold, rd["gold"].get<int>());
          EXPECT_EQ(d.outcome.pred, rd["pred"].get<int>());
          EXPECT_EQ(d.outcome.acc, rd["acc"].get<double>());
          if (rd.contains("acc_norm")) {
            EXPECT_EQ(d.choice_chars, rd["choice_char_lens"].get<std::vector<double>>());
            EXPECT_EQ(d.outcome.pred_norm, rd["pred_norm"].get<int>());
            EXPECT_EQ(d.outcome.acc_norm, rd["acc_norm"].get<double>());
          }
        } else {
          worst = std::max(worst, std::fabs(d.lls.at(0) - rd["ll"].get<double>()));
          EXPECT_EQ(d.is_greedy.at(0) != 0, rd["is_greedy"].get<bool>());
          EXPECT_EQ(d.continuation_tokens.at(0), rd["n_continuation_tokens"].get<int>());
        }
        results.push_back(d);
      }
      EXPECT_LE(worst, 1e-3);
      std::string line;
      for (const Metric& m : TaskMetrics(info, results)) {
        ASSERT_TRUE(ref.contains(m.name)) << m.name;
        const double want = ref[m.name].get<double>();
        if (m.name == "perplexity") {
          EXPECT_LE(std::fabs(m.value - want), 1e-3 * want);
        } else {
          EXPECT_NEAR(m.value, want, 1e-12) << m.name;  // exact: means of 0/1 over 10 docs
        }
        char buf[96];
        std::snprintf(buf, sizeof buf, " %s %.4g (ref %.4g)", m.name.c_str(), m.value, want);
        line += buf;
      }
      std::printf("[eval-conformance] %-20s %-15s max |ll err| %.3g,%s\n", f.name.c_str(),
                  task.c_str(), worst, line.c_str());
    }
  }
}

// The same vectors through the batched scorer (docs/evaluation.md "Batching across
// documents"): each task's reference docs scored together, several per forward, give the
// reference log-likelihoods within 1e-3 and its predictions and accuracies exactly.
TEST(EvalConformance, TaskAccuraciesBatched) {
  SKIP_WITHOUT_FOLDERS();
  for (const auto& f : Folders()) {
    SCOPED_TRACE(f.name);
    LoglikelihoodBatcher batcher(Model::Load(f.model_dir), MaxLength(f), 96);
    const bool add_bos = f.summary["harness_semantics"].value("add_bos_token", true);
    for (const auto& [task, ref] : f.summary["tasks"].items()) {
      SCOPED_TRACE(task);
      const TaskInfo& info = FindTask(task);
      std::vector<Doc> docs;
      for (const auto& rd : ref["docs"]) docs.push_back(Docs(task).at(rd["doc_index"].get<int>()));
      const std::vector<DocResult> results = ScoreDocsBatched(batcher, Tok(f), info, docs, add_bos);
      ASSERT_EQ(results.size(), ref["docs"].size());
      double worst = 0;
      for (size_t i = 0; i < results.size(); ++i) {
        const json& rd = ref["docs"][i];
        const DocResult& d = results[i];
        if (info.kind == TaskKind::kMultipleChoice) {
          const auto lls = rd["lls"].get<std::vector<double>>();
          ASSERT_EQ(d.lls.size(), lls.size());
          for (size_t k = 0; k < lls.size(); ++k)
            worst = std::max(worst, std::fabs(d.lls[k] - lls[k]));
          EXPECT_EQ(d.outcome.pred, rd["pred"].get<int>()) << "doc " << i;
        } else {
          worst = std::max(worst, std::fabs(d.lls.at(0) - rd["ll"].get<double>()));
          EXPECT_EQ(d.is_greedy.at(0) != 0, rd["is_greedy"].get<bool>()) << "doc " << i;
        }
      }
      EXPECT_LE(worst, 1e-3);
      for (const Metric& m : TaskMetrics(info, results)) {
        const double want = ref[m.name].get<double>();
        if (m.name == "perplexity")
          EXPECT_LE(std::fabs(m.value - want), 1e-3 * want);
        else
          EXPECT_NEAR(m.value, want, 1e-12) << m.name;
      }
      std::printf("[eval-conformance] %-20s %-15s batched, max |ll err| %.3g\n", f.name.c_str(),
                  task.c_str(), worst);
    }
  }
}

TEST(EvalConformance, GreedyRequests) {
  SKIP_WITHOUT_FOLDERS();
  for (const auto& f : Folders()) {
    SCOPED_TRACE(f.name);
    const std::string path = f.path + "/greedy_requests.jsonl";
    if (!fs::exists(path)) continue;
    LoglikelihoodScorer scorer(Model::Load(f.model_dir), MaxLength(f));
    double worst = 0;
    int greedy = 0, n = 0;
    for (const auto& r : ReadJsonl(path)) {
      SCOPED_TRACE(r.dump().substr(0, 80));
      const RequestScore s = scorer.Score(r["context_ids"].get<std::vector<int>>(),
                                          r["continuation_ids"].get<std::vector<int>>());
      const double err = std::fabs(s.loglikelihood - r["loglikelihood"].get<double>());
      EXPECT_LE(err, 1e-3);
      EXPECT_LE(MaxLogprobError(s, r["token_logprobs"]), 1e-3f);
      EXPECT_EQ(s.is_greedy, r["is_greedy"].get<bool>());
      worst = std::max(worst, err);
      greedy += s.is_greedy ? 1 : 0;
      ++n;
    }
    std::printf("[eval-conformance] %-20s greedy requests: %d (%d greedy), max |ll err| %.3g\n",
                f.name.c_str(), n, greedy, worst);
  }
}

TEST(EvalConformance, RollingPerplexity) {
  SKIP_WITHOUT_FOLDERS();
  for (const auto& f : Folders()) {
    SCOPED_TRACE(f.name);
    const std::string path = f.path + "/perplexity.json";
    if (!fs::exists(path)) continue;
    const json p = json::parse(ReadTextFile(path));
    const std::string text = p["text"];
    EXPECT_EQ(Tok(f).Encode(text, true), p["tokens_with_bos"].get<std::vector<int>>());
    LoglikelihoodScorer scorer(Model::Load(f.model_dir), p["max_length"].get<int>());
    for (const auto& [variant, add_bos] :
         {std::pair<const char*, bool>{"lm_eval_rolling_add_bos_true", true},
          {"lm_eval_rolling_text_tokens_only", false}}) {
      SCOPED_TRACE(variant);
      const json& ref = p[variant];
      PerplexityOptions opt;
      opt.add_bos = add_bos;
      const PerplexityResult r = RollingPerplexity(scorer, Tok(f), text, opt);
      ASSERT_EQ(r.windows.size(), ref["windows"].size());
      double worst = 0;
      for (size_t i = 0; i < r.windows.size(); ++i) {
        const json& w = ref["windows"][i];
        EXPECT_EQ(r.windows[i].input_ids, w["input_ids"].get<std::vector<int>>()) << "window " << i;
        EXPECT_EQ(r.windows[i].n_scored, w["n_scored"].get<int>()) << "window " << i;
        worst = std::max(worst, std::fabs(r.windows[i].nll - w["nll"].get<double>()));
      }
      EXPECT_LE(worst, 1e-3);
      EXPECT_EQ(r.scored_tokens, ref["scored_tokens"].get<int64_t>());
      EXPECT_EQ(r.num_words, p["num_words_lm_eval"].get<int64_t>());
      EXPECT_EQ(r.num_bytes, p["num_bytes"].get<int64_t>());
      EXPECT_EQ(r.text_tokens, p["text_token_count_without_bos"].get<int64_t>());
      EXPECT_NEAR(r.nll_sum, ref["nll_sum"].get<double>(), 1e-2);
      auto rel = [](double a, double b) { return std::fabs(a - b) / std::fabs(b); };
      EXPECT_LE(rel(r.token_perplexity(), ref["token_perplexity"]), 1e-4);
      EXPECT_LE(rel(r.word_perplexity(), ref["word_perplexity"]), 1e-4);
      EXPECT_LE(rel(r.byte_perplexity(), ref["byte_perplexity"]), 1e-4);
      EXPECT_LE(rel(r.bits_per_byte(), ref["bits_per_byte"]), 1e-4);
      std::printf(
          "[eval-conformance] %-20s %-34s %zu windows, max |nll err| %.3g, nll_sum %.4f "
          "(ref %.4f), word ppl %.6g, byte ppl %.6g, bits/byte %.6g\n",
          f.name.c_str(), variant, r.windows.size(), worst, r.nll_sum, ref["nll_sum"].get<double>(),
          r.word_perplexity(), r.byte_perplexity(), r.bits_per_byte());
    }
  }
}

}  // namespace eval_conformance_test
}  // namespace elm::eval
