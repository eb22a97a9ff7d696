// Batching across documents (eval/loglikelihood_batch.h, docs/evaluation.md "Batching across
// documents") against the one-document-at-a-time scorer: the same log-likelihoods within
// docs/numerics.md's tolerance and the same greedy flags, whatever the rows per forward and
// the pool size (prefill chunks, split branch groups, documents scored alone), the same
// accuracies end to end on the shipped task data, and the cached prefix still reused.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/mmap_file.h"
#include "eval/evaluator.h"
#include "eval/loglikelihood_batch.h"
#include "io/model_tokenizer.h"
#include "test_util.h"

namespace elm::eval {
namespace eval_batch_test {

using nlohmann::json;

const std::string kTinyModel = std::string(ELM_SOURCE_DIR) + "/models/tiny-random-32k";

std::shared_ptr<const Model> Tiny() {
  static const auto model = Model::Load(kTinyModel);
  return model;
}

std::vector<int> TokenRun(int first, int n) {
  std::vector<int> v;
  for (int i = 0; i < n; ++i) v.push_back(first + 37 * i % 5000);
  return v;
}

// Documents of every shape the tasks make: choices of one context, WinoGrande's contexts that
// differ, one request (LAMBADA), a long prefix shared across documents (MMLU's few-shot
// examples), a long continuation, and a request truncated on the left.
struct DocSet {
  std::vector<std::vector<std::vector<int>>> contexts, continuations;
};

DocSet MakeDocs() {
  DocSet s;
  std::vector<int> shot = {1};
  for (int i = 0; i < 30; ++i) shot.push_back(700 + i);
  for (int d = 0; d < 12; ++d) {
    std::vector<std::vector<int>> ctx, cont;
    std::vector<int> c = {1};
    if (d % 3 == 2) c = shot;  // shared across documents
    const std::vector<int> q = TokenRun(100 + 11 * d, 3 + d % 5);
    c.insert(c.end(), q.begin(), q.end());
    switch (d % 4) {
      case 0:  // four choices
        for (int k = 0; k < 4; ++k) {
          ctx.push_back(c);
          cont.push_back(TokenRun(2000 + 13 * d + k, 1 + (k + d) % 4));
        }
        break;
      case 1: {  // contexts that differ after a shared start, one shared continuation
        for (int k = 0; k < 2; ++k) {
          std::vector<int> ck = c;
          ck.push_back(3000 + k);
          ctx.push_back(ck);
          cont.push_back(TokenRun(4000 + d, 3));
        }
        break;
      }
      case 2:  // one request
        ctx.push_back(c);
        cont.push_back(TokenRun(5000 + d, 2));
        break;
      default:  // a long continuation beside short ones
        ctx.push_back(c);
        cont.push_back(TokenRun(6000 + d, 40));
        ctx.push_back(c);
        cont.push_back({7});
        break;
    }
    s.contexts.push_back(ctx);
    s.continuations.push_back(cont);
  }
  // Truncated on the left at max_length 64.
  s.contexts.push_back({TokenRun(9000, 80), TokenRun(9000, 80)});
  s.continuations.push_back({{5, 6}, {8}});
  return s;
}

std::vector<std::vector<LoglikelihoodScorer::Ids>> IdsOf(const DocSet& s) {
  std::vector<std::vector<LoglikelihoodScorer::Ids>> out(s.contexts.size());
  for (size_t d = 0; d < s.contexts.size(); ++d)
    for (size_t k = 0; k < s.contexts[d].size(); ++k)
      out[d].push_back({s.contexts[d][k], s.continuations[d][k]});
  return out;
}

void ExpectSameScores(const std::vector<RequestScore>& want, const std::vector<RequestScore>& got,
                      const std::string& what) {
  ASSERT_EQ(want.size(), got.size()) << what;
  for (size_t k = 0; k < want.size(); ++k) {
    EXPECT_NEAR(got[k].loglikelihood, want[k].loglikelihood,
                1e-4 * (1 + std::fabs(want[k].loglikelihood)))
        << what << " request " << k;
    EXPECT_EQ(got[k].is_greedy, want[k].is_greedy) << what << " request " << k;
    EXPECT_EQ(got[k].token_logprobs.size(), want[k].token_logprobs.size()) << what;
  }
}

TEST(EvalBatch, ScoreDocsEqualsScoreAllDocByDoc) {
  const DocSet s = MakeDocs();
  const auto ids = IdsOf(s);
  LoglikelihoodScorer single(Tiny(), 64);
  std::vector<std::vector<RequestScore>> want;
  for (const auto& doc : ids) want.push_back(single.ScoreAll(doc));
  // 8 rows: prefixes prefilled in chunks, choices split into groups, the 40-token continuation
  // scored alone; 1 row: a step per token; 2 sessions or the default pool.
  for (const auto& [rows, sessions] :
       std::vector<std::pair<int, int>>{{1, 1}, {8, 2}, {8, 0}, {32, 3}, {128, 0}, {1000, 16}}) {
    const std::string what =
        std::to_string(rows) + " rows, " + std::to_string(sessions) + " sessions";
    LoglikelihoodBatcher batcher(Tiny(), 64, rows, sessions);
    const auto got = batcher.ScoreDocs(ids);
    ASSERT_EQ(got.size(), want.size());
    for (size_t d = 0; d < got.size(); ++d)
      ExpectSameScores(want[d], got[d], what + " doc " + std::to_string(d));
    // Again: the pool's caches now hold earlier documents; the scores stay the same.
    const auto again = batcher.ScoreDocs(ids);
    for (size_t d = 0; d < got.size(); ++d)
      ExpectSameScores(want[d], again[d], what + " again, doc " + std::to_string(d));
    if (rows >= 128) {
      // Several documents per forward: fewer forwards than documents.
      EXPECT_LT(batcher.forwards(), 2 * static_cast<int64_t>(ids.size())) << what;
    }
  }
}

TEST(EvalBatch, SharedPrefixIsReusedAcrossDocuments) {
  // Six documents behind one 40-token prefix (MMLU's first_n examples), with a pool of two
  // sessions: the prefix is fed once, not once per document or per session (a document waits
  // for the one in flight that feeds its prefix, then takes its session).
  std::vector<int> prefix = {1};
  for (int i = 0; i < 40; ++i) prefix.push_back(800 + i);
  DocSet s;
  for (int d = 0; d < 6; ++d) {
    std::vector<int> c = prefix;
    c.push_back(1500 + d);
    c.push_back(1600 + d);
    s.contexts.push_back({c, c});
    s.continuations.push_back({{450}, {451}});
  }
  // Documents that share only BOS run side by side (several per forward).
  for (int d = 0; d < 6; ++d) {
    s.contexts.push_back({TokenRun(2000 + 50 * d, 6), TokenRun(2000 + 50 * d, 6)});
    s.continuations.push_back({{450}, {451}});
  }
  LoglikelihoodBatcher batcher(Tiny(), 128, 64, 2);
  const auto ids = IdsOf(s);
  const auto got = batcher.ScoreDocs(ids);
  // Each shared-prefix doc: its 42-token shared part once (41 from the cache after the first),
  // two 1-token branches; each other doc: its 5 context tokens before the scored row, two
  // 1-token branches.
  EXPECT_EQ(batcher.tokens_forwarded(), 42 + 5 * 1 + 6 * 2 + 6 * (5 + 2));
  EXPECT_LT(batcher.forwards(), 2 * 6 + 2 * 6);
  LoglikelihoodScorer single(Tiny(), 128);
  for (size_t d = 0; d < ids.size(); ++d)
    ExpectSameScores(single.ScoreAll(ids[d]), got[d], "doc " + std::to_string(d));
}

TEST(EvalBatch, PoolSessionsAreAsLongAsTheLongestInput) {
  // Short documents under max_length 128: sessions of their length, not 128 positions each.
  DocSet s;
  for (int d = 0; d < 4; ++d) {
    s.contexts.push_back({TokenRun(300 + 9 * d, 5), TokenRun(300 + 9 * d, 5)});
    s.continuations.push_back({{450}, {451, 452}});
  }
  LoglikelihoodBatcher batcher(Tiny(), 128, 16, 2);
  LoglikelihoodScorer single(Tiny(), 128);
  const auto ids = IdsOf(s);
  const auto got = batcher.ScoreDocs(ids);
  EXPECT_EQ(batcher.session_context(), 7);
  for (size_t d = 0; d < ids.size(); ++d)
    ExpectSameScores(single.ScoreAll(ids[d]), got[d], "doc " + std::to_string(d));
  // Longer documents next: the sessions grow (to max_length at most) and score as before.
  DocSet longer;
  longer.contexts.push_back({TokenRun(700, 60), TokenRun(700, 60)});
  longer.continuations.push_back({{450}, {451}});
  longer.contexts.push_back({TokenRun(900, 200), TokenRun(900, 200)});
  longer.continuations.push_back({{450, 453}, {451}});
  const auto more = IdsOf(longer);
  const auto got_more = batcher.ScoreDocs(more);
  EXPECT_EQ(batcher.session_context(), 128);
  for (size_t d = 0; d < more.size(); ++d)
    ExpectSameScores(single.ScoreAll(more[d]), got_more[d], "longer doc " + std::to_string(d));
  const auto again = batcher.ScoreDocs(ids);
  for (size_t d = 0; d < ids.size(); ++d)
    ExpectSameScores(single.ScoreAll(ids[d]), again[d], "again, doc " + std::to_string(d));
}

TEST(EvalBatch, BadRequestsAreErrors) {
  LoglikelihoodBatcher batcher(Tiny(), 8, 16);
  const std::vector<int> ctx = {1, 2}, empty, too_long(9, 5), bad_id = {40000};
  for (const auto& cont : {empty, too_long, bad_id}) {
    const std::vector<std::vector<LoglikelihoodScorer::Ids>> docs = {{{ctx, cont}}};
    EXPECT_THROW(batcher.ScoreDocs(docs), Error);
  }
  EXPECT_THROW(LoglikelihoodBatcher(Tiny(), 8, 0), Error);
  // Still usable.
  const std::vector<int> ok = {3};
  const std::vector<std::vector<LoglikelihoodScorer::Ids>> docs = {{{ctx, ok}}};
  EXPECT_EQ(batcher.ScoreDocs(docs).at(0).size(), 1u);
}

// RunEval on the shipped task data (a few docs of the short-context tasks and LAMBADA), batched
// and doc by doc: the same accuracies, the per-request log-likelihoods within tolerance, and the
// requests reported in the same order.
TEST(EvalBatch, RunEvalBatchedEqualsUnbatched) {
  const Tokenizer tok = LoadTokenizerFor(kTinyModel, "");
  std::vector<const TaskInfo*> tasks;
  for (const char* t : {"arc_easy", "piqa", "winogrande", "lambada_openai", "boolq"})
    tasks.push_back(&FindTask(t));
  EvalOptions opt;
  opt.limit = 5;
  opt.data.data_dir = std::string(ELM_SOURCE_DIR) + "/data/eval";
  std::vector<std::pair<int, double>> want_lls, got_lls;
  auto run = [&](LoglikelihoodBatcher* batcher, std::vector<std::pair<int, double>>* lls) {
    LoglikelihoodScorer scorer(Tiny(), 0);
    EvalCallbacks cb;
    cb.on_request = [&](const RequestRecord& r) {
      lls->push_back({r.doc_index * 10 + r.choice_index, r.score->loglikelihood});
    };
    return RunEval(scorer, tok, tasks, opt, cb, batcher);
  };
  const EvalReport want = run(nullptr, &want_lls);
  LoglikelihoodBatcher batcher(Tiny(), 0, 48);
  const EvalReport got = run(&batcher, &got_lls);
  ASSERT_EQ(want.tasks.size(), got.tasks.size());
  for (size_t t = 0; t < want.tasks.size(); ++t) {
    SCOPED_TRACE(want.tasks[t].task->name);
    ASSERT_EQ(want.tasks[t].metrics.size(), got.tasks[t].metrics.size());
    for (size_t m = 0; m < want.tasks[t].metrics.size(); ++m) {
      const Metric &a = want.tasks[t].metrics[m], &b = got.tasks[t].metrics[m];
      if (a.name == "perplexity")
        EXPECT_NEAR(a.value, b.value, 1e-4 * a.value);
      else
        EXPECT_EQ(a.value, b.value) << a.name;
    }
    for (size_t d = 0; d < want.tasks[t].docs.size(); ++d)
      EXPECT_EQ(want.tasks[t].docs[d].outcome.pred, got.tasks[t].docs[d].outcome.pred);
  }
  ASSERT_EQ(want_lls.size(), got_lls.size());
  for (size_t i = 0; i < want_lls.size(); ++i) {
    EXPECT_EQ(want_lls[i].first, got_lls[i].first) << i;
    EXPECT_NEAR(want_lls[i].second, got_lls[i].second, 1e-4 * (1 + std::fabs(want_lls[i].second)))
        << i;
  }
}

TEST(EvalBatch, CliBatchTokensGivesTheSameResults) {
  const std::string tmp = test::TempDir("eval_batch");
  const std::string base = "eval --model " + kTinyModel + " --tasks arc_easy,piqa --limit 4 -o ";
  std::string out, err;
  ASSERT_EQ(test::RunElm(base + tmp + "/one.json --batch-tokens 0", &out, &err), 0) << err;
  ASSERT_EQ(test::RunElm(base + tmp + "/batched.json --batch-tokens 40", &out, &err), 0) << err;
  const json one = json::parse(ReadTextFile(tmp + "/one.json"));
  const json batched = json::parse(ReadTextFile(tmp + "/batched.json"));
  EXPECT_EQ(one["config"]["batch_tokens"], 0);
  EXPECT_EQ(batched["config"]["batch_tokens"], 40);
  for (const char* t : {"arc_easy", "piqa"}) {
    EXPECT_EQ(one["results"][t]["acc,none"], batched["results"][t]["acc,none"]) << t;
    EXPECT_EQ(one["results"][t]["acc_norm,none"], batched["results"][t]["acc_norm,none"]) << t;
  }
  EXPECT_NE(test::RunElm(base + tmp + "/x.json --batch-tokens -1", &out, &err), 0);
  std::filesystem::remove_all(tmp);
}

}  // namespace eval_batch_test
}  // namespace elm::eval
