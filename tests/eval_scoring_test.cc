// Request encoding (_encode_pair), left truncation, log-softmax scoring and KV-cache reuse,
// per-doc metrics and their standard errors, and lm-eval's rolling perplexity windows.
#include <gtest/gtest.h>

#include <cmath>

#include "base/error.h"
#include "eval/evaluator.h"
#include "eval/metrics.h"
#include "eval/perplexity.h"
#include "model/session.h"

namespace elm::eval {
namespace eval_scoring_test {

const std::string kTinyModel = std::string(ELM_SOURCE_DIR) + "/models/tiny-random-32k";

std::shared_ptr<const Model> Tiny() {
  static const auto model = Model::Load(kTinyModel);
  return model;
}

TEST(EvalEncode, TrailingWhitespaceMovesToTheContinuation) {
  const Tokenizer& tok = Tokenizer::Default();
  const EncodedRequest r = EncodePair(tok, "Question: Is it?\nAnswer: \n", "yes", true);
  EXPECT_EQ(r.context, "Question: Is it?\nAnswer:");
  EXPECT_EQ(r.continuation, " \nyes");
  EXPECT_EQ(r.context_ids, tok.Encode(r.context, true));
  EXPECT_EQ(r.context_ids.front(), tok.bos_id());
  // The continuation tokens come from the joint tokenization, split at len(context_ids).
  std::vector<int> joined = r.context_ids;
  joined.insert(joined.end(), r.continuation_ids.begin(), r.continuation_ids.end());
  EXPECT_EQ(joined, tok.Encode(r.context + r.continuation, true));
}

TEST(EvalEncode, JointTokenizationCanDifferFromSeparate) {
  // "▁yes" is one token, while " yes" encoded on its own gets SentencePiece's dummy prefix too;
  // lm-eval takes the continuation ids from the joint encoding.
  const Tokenizer& tok = Tokenizer::Default();
  const EncodedRequest r = EncodePair(tok, "Answer:", " yes", true);
  const std::vector<int> whole = tok.Encode("Answer: yes", true);
  EXPECT_EQ(r.continuation_ids,
            std::vector<int>(whole.begin() + r.context_ids.size(), whole.end()));
  const EncodedRequest no_bos = EncodePair(tok, "Answer:", " yes", false);
  EXPECT_EQ(no_bos.context_ids, tok.Encode("Answer:", false));
  EXPECT_EQ(no_bos.continuation_ids, r.continuation_ids);
}

TEST(EvalEncode, EmptyContextUsesThePrefixToken) {
  const Tokenizer& tok = Tokenizer::Default();
  const EncodedRequest r = EncodePair(tok, "", "Hello world", true);
  EXPECT_EQ(r.context_ids, std::vector<int>{tok.bos_id()});
  EXPECT_EQ(r.continuation_ids, tok.Encode("Hello world", true));  // HFLM's tok_encode
}

TEST(EvalEncode, ModelInputTruncatesOnTheLeft) {
  const std::vector<int> ctx = {1, 2, 3, 4, 5}, cont = {6, 7};
  // (ctx + cont)[-(max_length + 1):][:-1]
  EXPECT_EQ(ModelInput(ctx, cont, 16), (std::vector<int>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(ModelInput(ctx, cont, 4), (std::vector<int>{3, 4, 5, 6}));
  EXPECT_EQ(ModelInput(ctx, cont, 6), (std::vector<int>{1, 2, 3, 4, 5, 6}));
}

TEST(EvalScore, TokenLogProb) {
  const std::vector<float> row = {1.0f, 3.0f, 3.0f, -2.0f};
  bool am = false;
  const double lse = std::log(std::exp(1.0) + 2 * std::exp(3.0) + std::exp(-2.0));
  EXPECT_NEAR(TokenLogProb(row, 0, &am), 1.0 - lse, 1e-6);
  EXPECT_FALSE(am);
  EXPECT_NEAR(TokenLogProb(row, 1, &am), 3.0 - lse, 1e-6);
  EXPECT_TRUE(am);
  TokenLogProb(row, 2, &am);
  EXPECT_FALSE(am);  // ties go to the first index, as torch.argmax
}

// A scorer that reuses its cache must agree with a fresh forward per request, including when
// the input is left-truncated.
TEST(EvalScore, CacheReuseAndTruncationMatchPlainForwards) {
  const auto model = Tiny();
  const int V = model->config().vocab_size;
  const int L = 24;
  LoglikelihoodScorer scorer(model, L);
  const std::vector<std::vector<int>> ctxs = {
      {1, 450, 4996, 17354, 1701, 29916, 432, 17204, 975},
      {1, 450, 4996, 17354, 1701, 29916, 432, 17204, 975},
      {1, 450, 4996, 3708},
      // 30 tokens: truncated on the left to fit L = 24.
      {1,  11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
       25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39}};
  const std::vector<std::vector<int>> conts = {{278, 17366, 11203}, {263}, {8, 9}, {300, 301, 302}};
  for (size_t i = 0; i < ctxs.size(); ++i) {
    SCOPED_TRACE(i);
    const RequestScore s = scorer.Score(ctxs[i], conts[i]);
    const std::vector<int> inp = ModelInput(ctxs[i], conts[i], L);
    ASSERT_LE(static_cast<int>(inp.size()), L);
    Session fresh(model, L);
    std::vector<float> logits;
    ForwardOptions opt;
    opt.all_logits = true;
    fresh.Forward(inp, logits, opt);
    double ll = 0;
    bool greedy = true;
    const size_t c = conts[i].size();
    for (size_t j = 0; j < c; ++j) {
      bool am = false;
      const float* row = logits.data() + (inp.size() - c + j) * V;
      ll += TokenLogProb(std::span<const float>(row, V), conts[i][j], &am);
      greedy = greedy && am;
    }
    EXPECT_NEAR(s.loglikelihood, ll, 1e-4);
    EXPECT_EQ(s.is_greedy, greedy);
    ASSERT_EQ(s.token_logprobs.size(), c);
  }
  // Request 1 shares all but the last context token with request 0 in the cache.
  EXPECT_GE(scorer.tokens_reused(), 8);

  // Without prefix reuse (HFLM's one forward per request) the scores are the same.
  LoglikelihoodScorer plain(model, L);
  plain.set_prefix_reuse(false);
  LoglikelihoodScorer cached(model, L);
  for (size_t i = 0; i < ctxs.size(); ++i) {
    const RequestScore a = plain.Score(ctxs[i], conts[i]);
    const RequestScore b = cached.Score(ctxs[i], conts[i]);
    EXPECT_NEAR(a.loglikelihood, b.loglikelihood, 1e-4) << i;
    EXPECT_EQ(a.is_greedy, b.is_greedy) << i;
  }
  EXPECT_EQ(plain.tokens_reused(), 0);
}

// Branches of one forward (ForwardOptions::branches) give what feeding each run alone after the
// prefix gives: bit for bit with the reference kernels (every row and query is computed on its
// own there), within the fast kernels' summation-order tolerance otherwise; and the cache holds
// the prefix and the last run.
TEST(EvalScore, BranchesEqualRunsFedOneByOne) {
  const auto model = Tiny();
  const auto V = static_cast<size_t>(model->config().vocab_size);
  const std::vector<int> prefix = {1, 450, 4996, 17354, 1701};
  const std::vector<std::vector<int>> runs = {{29916, 432}, {17204}, {975, 278, 17366, 11203}};
  for (const bool reference : {true, false}) {
    SCOPED_TRACE(reference ? "reference kernels" : "fast kernels");
    Session one(model, 32), many(model, 32);
    one.set_reference(reference);
    many.set_reference(reference);
    std::vector<float> logits, want, got;
    one.Forward(prefix, logits);
    many.Forward(prefix, logits);
    ForwardOptions all;
    all.all_logits = true;
    for (const auto& r : runs) {
      one.Rewind(static_cast<int>(prefix.size()));
      one.Forward(r, logits, all);
      want.insert(want.end(), logits.begin(), logits.end());
    }
    std::vector<int> tokens, lengths;
    for (const auto& r : runs) {
      tokens.insert(tokens.end(), r.begin(), r.end());
      lengths.push_back(static_cast<int>(r.size()));
    }
    ForwardOptions branched = all;
    branched.branches = lengths;
    many.Forward(tokens, got, branched);
    ASSERT_EQ(got.size(), want.size());
    ASSERT_EQ(got.size(), tokens.size() * V);
    for (size_t i = 0; i < got.size(); ++i) {
      if (reference)
        ASSERT_EQ(got[i], want[i]) << i;
      else
        ASSERT_NEAR(got[i], want[i], 1e-4f * (1 + std::fabs(want[i]))) << i;
    }
    // Both caches hold the prefix and the last run: the next token scores alike.
    EXPECT_EQ(many.position(), one.position());
    one.Forward(std::vector<int>{42}, want);
    many.Forward(std::vector<int>{42}, got);
    for (size_t i = 0; i < V; ++i) ASSERT_NEAR(got[i], want[i], 1e-4f * (1 + std::fabs(want[i])));
  }
  // Lengths that do not add up, and a run longer than the context, are errors.
  Session s(model, 8);
  std::vector<float> logits;
  ForwardOptions bad;
  const std::vector<int> wrong = {1, 1};
  bad.branches = wrong;
  EXPECT_THROW(s.Forward(std::vector<int>{1, 2, 3}, logits, bad), Error);
  const std::vector<int> long_run = {9};
  bad.branches = long_run;
  EXPECT_THROW(s.Forward(std::vector<int>(9, 5), logits, bad), Error);
}

// ScoreAll (a document's choices as branches) gives what Score gives one request at a time:
// choices that differ in the continuation, in the context (WinoGrande), that are truncated on
// the left, and a group split at Session::kMaxBatch tokens, with requests longer than that alone.
TEST(EvalScore, ScoreAllEqualsScoreOneByOne) {
  const auto model = Tiny();
  std::vector<int> long_ctx = {1};
  for (int i = 0; i < 40; ++i) long_ctx.push_back(300 + i);
  std::vector<int> long_cont(120);
  for (size_t i = 0; i < long_cont.size(); ++i) long_cont[i] = 500 + static_cast<int>(i);
  std::vector<int> longest_cont(300);
  for (size_t i = 0; i < longest_cont.size(); ++i) longest_cont[i] = 900 + static_cast<int>(i);
  const std::vector<std::vector<std::vector<int>>> docs = {
      // contexts, then continuations
      {{1, 450, 4996, 17354}, {1, 450, 4996, 17354}, {1, 450, 4996, 17354}},
      {{1, 450, 4996, 3708, 12}, {1, 450, 4996, 77}},
      {long_ctx, long_ctx, long_ctx, long_ctx, long_ctx},
  };
  const std::vector<std::vector<std::vector<int>>> conts = {
      {{278, 17366}, {263}, {8, 9, 10, 11}},
      {{300, 301}, {300, 301}},
      {long_cont, long_cont, long_cont, {7, 8}, longest_cont},
  };
  for (const int L : {24, 512}) {
    SCOPED_TRACE(L);
    LoglikelihoodScorer batched(model, L), single(model, L);
    single.set_branches(false);
    for (size_t d = 0; d < docs.size(); ++d) {
      std::vector<LoglikelihoodScorer::Ids> ids;
      for (size_t k = 0; k < docs[d].size(); ++k) {
        if (static_cast<int>(conts[d][k].size()) > L) continue;
        ids.push_back({docs[d][k], conts[d][k]});
      }
      const auto got = batched.ScoreAll(ids);
      const auto want = single.ScoreAll(ids);
      ASSERT_EQ(got.size(), want.size());
      for (size_t k = 0; k < got.size(); ++k) {
        EXPECT_NEAR(got[k].loglikelihood, want[k].loglikelihood,
                    1e-4 * (1 + std::fabs(want[k].loglikelihood)))
            << "doc " << d << " request " << k;
        EXPECT_EQ(got[k].is_greedy, want[k].is_greedy) << "doc " << d << " request " << k;
      }
    }
    EXPECT_LT(batched.tokens_forwarded(), single.tokens_forwarded() + 1);
  }
}

TEST(EvalScore, RejectsUnscorableRequests) {
  LoglikelihoodScorer scorer(Tiny(), 8);
  EXPECT_THROW(scorer.Score(std::vector<int>{1, 2}, std::vector<int>{}), Error);
  EXPECT_THROW(scorer.Score(std::vector<int>{1}, std::vector<int>(9, 5)), Error);  // > max_length
  EXPECT_THROW(scorer.Score(std::vector<int>{1}, std::vector<int>{40000}), Error);
  // The scorer stays usable after an error.
  EXPECT_NO_THROW(scorer.Score(std::vector<int>{1, 2}, std::vector<int>{3}));
}

TEST(EvalMetrics, ChoicesAccAndAccNorm) {
  // acc picks the raw best, acc_norm the best per character.
  const std::vector<double> lls = {-10, -12, -30}, chars = {5, 12, 40};
  ChoiceOutcome o = ScoreChoices(lls, chars, 1);
  EXPECT_EQ(o.pred, 0);
  EXPECT_EQ(o.pred_norm, 2);
  EXPECT_EQ(o.acc, 0.0);
  EXPECT_EQ(o.acc_norm, 0.0);
  o = ScoreChoices(std::vector<double>{-5, -5}, std::vector<double>{2, 2}, 0);  // tie: first
  EXPECT_EQ(o.pred, 0);
  EXPECT_EQ(o.acc, 1.0);
  EXPECT_EQ(o.acc_norm, 1.0);
}

TEST(EvalMetrics, MeansAndStandardErrors) {
  const std::vector<double> v = {1, 0, 0, 1};
  EXPECT_DOUBLE_EQ(Mean(v), 0.5);
  EXPECT_NEAR(MeanStderr(v), std::sqrt(1.0 / 3.0) / 2.0, 1e-12);  // sample std / sqrt(n)
  EXPECT_TRUE(std::isnan(MeanStderr(std::vector<double>{1})));
  const std::vector<double> lls = {-2, -4};
  EXPECT_NEAR(Perplexity(lls), std::exp(3.0), 1e-9);
  EXPECT_NEAR(PerplexityStderr(lls), std::exp(3.0) * 1.0, 1e-9);
}

TEST(EvalMetrics, TaskMetricsPerKind) {
  DocResult a, b;
  a.outcome = {0, 1, 1.0, 0.0};
  b.outcome = {1, 1, 0.0, 1.0};
  const std::vector<DocResult> docs = {a, b};
  auto m = TaskMetrics(FindTask("arc_easy"), docs);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].name, "acc");
  EXPECT_EQ(m[1].name, "acc_norm");
  EXPECT_EQ(TaskMetrics(FindTask("boolq"), docs).size(), 1u);
  DocResult l1, l2;
  l1.lls = {-1};
  l1.is_greedy = {1};
  l2.lls = {-3};
  l2.is_greedy = {0};
  m = TaskMetrics(FindTask("lambada_openai"), std::vector<DocResult>{l1, l2});
  ASSERT_EQ(m.size(), 2u);
  EXPECT_DOUBLE_EQ(m[0].value, 0.5);
  EXPECT_EQ(m[1].name, "perplexity");
  EXPECT_NEAR(m[1].value, std::exp(2.0), 1e-9);
}

std::vector<int> Range(int a, int b) {
  std::vector<int> v;
  for (int i = a; i < b; ++i) v.push_back(i);
  return v;
}

void ExpectWindow(const RollingWindow& w, const std::vector<int>& ctx,
                  const std::vector<int>& cont) {
  EXPECT_EQ(w.context, ctx);
  EXPECT_EQ(w.continuation, cont);
}

TEST(EvalPerplexity, RollingWindowsDisjoint) {
  const auto tokens = Range(10, 20);  // 10 tokens, max_seq_len 4
  const auto w = RollingWindows(tokens, 1, 4, 1);
  ASSERT_EQ(w.size(), 3u);
  ExpectWindow(w[0], {1}, {10, 11, 12, 13});   // first window: from the prefix token alone
  ExpectWindow(w[1], {13}, {14, 15, 16, 17});  // conditioned on the previous window's last
  ExpectWindow(w[2], {15, 16, 17}, {18, 19});  // partial: re-reads to a full input
  EXPECT_EQ(ModelInput(w[2].context, w[2].continuation, 4), (std::vector<int>{15, 16, 17, 18}));
}

TEST(EvalPerplexity, RollingWindowsWithStride) {
  // stride 2 = context_len 3: every later prediction sees at least 2 earlier tokens.
  const auto w = RollingWindows(Range(10, 20), 1, 4, 3);
  ASSERT_EQ(w.size(), 4u);
  ExpectWindow(w[0], {1}, {10, 11, 12, 13});
  ExpectWindow(w[1], {11, 12, 13}, {14, 15});
  ExpectWindow(w[2], {13, 14, 15}, {16, 17});
  ExpectWindow(w[3], {15, 16, 17}, {18, 19});
}

TEST(EvalPerplexity, ShortTextsAndBadStrides) {
  const auto w = RollingWindows(Range(10, 12), 1, 4, 1);
  ASSERT_EQ(w.size(), 1u);
  ExpectWindow(w[0], {1}, {10, 11});
  EXPECT_TRUE(RollingWindows(std::vector<int>{}, 1, 4, 1).empty());
  EXPECT_THROW(RollingWindows(Range(0, 5), 1, 4, 5), Error);
  LoglikelihoodScorer scorer(Tiny(), 16);
  PerplexityOptions opt;
  opt.stride = 17;
  EXPECT_THROW(RollingPerplexity(scorer, Tokenizer::Default(), "some text", opt), Error);
}

TEST(EvalPerplexity, EveryTokenScoredOnceWhateverTheStride) {
  LoglikelihoodScorer scorer(Tiny(), 16);
  const std::string text =
      "It was the best of times, it was the worst of times, it was the age "
      "of wisdom, it was the age of foolishness.";
  const int n = static_cast<int>(Tokenizer::Default().Encode(text, true).size());
  for (int stride : {0, 1, 5, 16}) {
    PerplexityOptions opt;
    opt.stride = stride;
    const PerplexityResult r = RollingPerplexity(scorer, Tokenizer::Default(), text, opt);
    EXPECT_EQ(r.scored_tokens, n) << "stride " << stride;
    EXPECT_GT(r.nll_sum, 0);
    EXPECT_EQ(r.num_bytes, static_cast<int64_t>(text.size()));
    EXPECT_EQ(r.num_words, 24);
  }
}

}  // namespace eval_scoring_test
}  // namespace elm::eval
