// Speculative decoding (src/generation/speculative.h, docs/sampling.md "Speculative decoding"):
// greedy output identical to plain decoding with a draft model and with prompt lookup, the
// session left as plain decoding leaves it, and sampled output distributed as the plain
// sampler's (chi-squared and total variation over many draws with fixed seeds).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "generation/generator.h"
#include "generation/speculative.h"
#include "model/model.h"
#include "model/session.h"
#include "sampling/sampling_distribution.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace elm {
namespace speculative_test {

std::shared_ptr<const Model> Tiny32k() {
  static const auto model = Model::Load(std::string(ELM_SOURCE_DIR) + "/models/tiny-random-32k");
  return model;
}

std::shared_ptr<const Model> Tiny32kQ4() {
  LoadOptions lo;
  lo.weights = DType::kQ4_0;
  static const auto model =
      Model::Load(std::string(ELM_SOURCE_DIR) + "/models/tiny-random-32k", lo);
  return model;
}

// The 256-token conformance checkpoints: two different models with one vocabulary.
std::shared_ptr<const Model> Conformance(const std::string& name) {
  return Model::Load(test::DataDir() + "/conformance/" + name);
}

std::vector<int> TextPrompt(const std::string& text) {
  static const Tokenizer tok = Tokenizer::Default();
  return tok.Encode(text, tok.add_bos());
}

GenerateOptions GreedyOptions(int n) {
  GenerateOptions go;
  go.max_new_tokens = n;
  go.stop_at_eos = false;
  go.sampling.temperature = 0;
  return go;
}

struct SpecRun {
  GenerateResult result;
  int position = 0;  // the session's position afterwards
};

SpecRun Plain(const std::shared_ptr<const Model>& m, const std::vector<int>& prompt,
              const GenerateOptions& go, int context = 0) {
  Session s(m, context);
  Sampler sampler(go.sampling);
  SpecRun r{Generate(s, prompt, go, sampler), 0};
  r.position = s.position();
  return r;
}

SpecRun Speculative(const std::shared_ptr<const Model>& m, const std::vector<int>& prompt,
                    GenerateOptions go, SpeculativeDecoder& spec, int context = 0) {
  Session s(m, context);
  Sampler sampler(go.sampling);
  go.speculative = &spec;
  SpecRun r{Generate(s, prompt, go, sampler), 0};
  r.position = s.position();
  return r;
}

TEST(SpeculativeGreedy, DraftModelOutputIsPlainDecodingsOutput) {
  const auto prompt = TextPrompt("Once upon a time there was");
  const GenerateOptions go = GreedyOptions(40);
  const SpecRun plain = Plain(Tiny32k(), prompt, go);
  for (int draft_max : {1, 3, 8}) {
    SpeculativeDecoder spec(std::make_unique<DraftModelDrafter>(Tiny32kQ4(), *Tiny32k(),
                                                                Tiny32k()->config().max_context),
                            draft_max, 7);
    const SpecRun r = Speculative(Tiny32k(), prompt, go, spec);
    EXPECT_EQ(r.result.ids, plain.result.ids) << "draft_max " << draft_max;
    EXPECT_EQ(r.position, plain.position);
    EXPECT_GT(spec.stats().drafted, 0);
  }
  // The model as its own draft: every proposal is kept.
  SpeculativeDecoder self(
      std::make_unique<DraftModelDrafter>(Tiny32k(), *Tiny32k(), Tiny32k()->config().max_context),
      4, 7);
  EXPECT_EQ(Speculative(Tiny32k(), prompt, go, self).result.ids, plain.result.ids);
  EXPECT_EQ(self.stats().accepted, self.stats().drafted);
}

TEST(SpeculativeGreedy, DifferentDraftModelOnTheConformanceCheckpoints) {
  const auto target = Conformance("a_tiny_qknorm_tied");
  const auto draft = Conformance("b_tiny_noqknorm_untied");
  const std::vector<int> prompt = {1, 17, 42, 99, 3, 17, 42};
  const GenerateOptions go = GreedyOptions(60);
  const SpecRun plain = Plain(target, prompt, go);
  SpeculativeDecoder spec(std::make_unique<DraftModelDrafter>(draft, *target, 128), 5, 1);
  const SpecRun r = Speculative(target, prompt, go, spec);
  EXPECT_EQ(r.result.ids, plain.result.ids);
  EXPECT_EQ(r.position, plain.position);
  EXPECT_LT(spec.stats().accepted, spec.stats().drafted);  // a different model: some rejected
}

TEST(SpeculativeGreedy, PromptLookupOutputIsPlainDecodingsOutput) {
  // A repetitive prompt, so that lookups find matches.
  const auto prompt = TextPrompt(
      "The cat sat on the mat. The cat sat on the mat. The dog sat on the log. The cat sat on");
  const GenerateOptions go = GreedyOptions(48);
  const SpecRun plain = Plain(Tiny32k(), prompt, go);
  for (int ngram : {1, 2, 3}) {
    SpeculativeDecoder spec(std::make_unique<PromptLookupDrafter>(ngram), 6, 3);
    const SpecRun r = Speculative(Tiny32k(), prompt, go, spec);
    EXPECT_EQ(r.result.ids, plain.result.ids) << "ngram " << ngram;
    EXPECT_EQ(r.position, plain.position);
    EXPECT_GT(spec.stats().drafted, 0);
  }
}

TEST(SpeculativeGreedy, StopsAndLogprobsAsWithoutSpeculation) {
  const auto prompt = TextPrompt("Once upon a time there was");
  // Length limits that end inside a step, a context that fills up, logprobs.
  for (int n : {1, 2, 5, 13}) {
    GenerateOptions go = GreedyOptions(n);
    go.logprobs = 2;
    const SpecRun plain = Plain(Tiny32k(), prompt, go);
    SpeculativeDecoder spec(std::make_unique<DraftModelDrafter>(Tiny32k(), *Tiny32k(), 512), 8, 1);
    const SpecRun r = Speculative(Tiny32k(), prompt, go, spec);
    EXPECT_EQ(r.result.ids, plain.result.ids);
    EXPECT_EQ(r.position, plain.position);
    ASSERT_EQ(r.result.logprobs.size(), plain.result.logprobs.size());
    for (size_t i = 0; i < r.result.logprobs.size(); ++i) {
      EXPECT_EQ(r.result.logprobs[i].id, plain.result.logprobs[i].id);
      EXPECT_NEAR(r.result.logprobs[i].logprob, plain.result.logprobs[i].logprob, 1e-3);
    }
  }
  const int ctx = static_cast<int>(prompt.size()) + 10;
  const SpecRun plain = Plain(Tiny32k(), prompt, GreedyOptions(100), ctx);
  SpeculativeDecoder spec(std::make_unique<DraftModelDrafter>(Tiny32kQ4(), *Tiny32k(), ctx), 4, 1);
  const SpecRun r = Speculative(Tiny32k(), prompt, GreedyOptions(100), spec, ctx);
  EXPECT_EQ(r.result.reason, StopReason::kContextFull);
  EXPECT_EQ(r.result.ids, plain.result.ids);
  EXPECT_EQ(r.position, ctx);
}

// As elm chat uses it: one decoder across turns on one session, which is rewound to a common
// prefix and fed the new turn; and a session fed behind the decoder's back.
TEST(SpeculativeGreedy, TurnsOnOneSessionMatchPlainDecoding) {
  const auto turn1 = TextPrompt("Once upon a time there was");
  const auto turn2 = TextPrompt("and then the cat said");
  Session plain(Tiny32k()), spec_session(Tiny32k());
  SpeculativeDecoder spec(std::make_unique<DraftModelDrafter>(Tiny32kQ4(), *Tiny32k(), 128), 4, 5);
  const GenerateOptions go = GreedyOptions(20);
  GenerateOptions gs = go;
  gs.speculative = &spec;
  Sampler s1(go.sampling), s2(go.sampling);
  const auto a1 = Generate(plain, turn1, go, s1);
  const auto b1 = Generate(spec_session, turn1, gs, s2);
  ASSERT_EQ(a1.ids, b1.ids);
  // Rewind into the first reply, then continue with the second turn.
  const int keep = static_cast<int>(turn1.size()) + 5;
  plain.Rewind(keep);
  spec_session.Rewind(keep);
  EXPECT_EQ(Generate(plain, turn2, go, s1).ids, Generate(spec_session, turn2, gs, s2).ids);
  EXPECT_EQ(plain.position(), spec_session.position());
  // Tokens fed without the decoder: it no longer knows the prefix and starts from the prompt.
  Feed(plain, turn1);
  Feed(spec_session, turn1);
  EXPECT_EQ(Generate(plain, turn2, go, s1).ids, Generate(spec_session, turn2, gs, s2).ids);
  EXPECT_GT(spec.stats().accepted, 0);
}

TEST(SpeculativeGreedy, DifferentVocabulariesAreAClearError) {
  try {
    DraftModelDrafter d(Conformance("a_tiny_qknorm_tied"), *Tiny32k(), 64);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("same vocabulary"), std::string::npos) << e.what();
  }
  EXPECT_THROW(PromptLookupDrafter(0), Error);
  EXPECT_THROW(SpeculativeDecoder(std::make_unique<PromptLookupDrafter>(2), 0, 1), Error);
}

TEST(SpeculativeLookup, ProposesTheContinuationOfTheLatestMatch) {
  PromptLookupDrafter d(2);
  Rng rng(1);
  std::vector<int> draft;
  std::vector<Candidates> q;
  const std::vector<int> ctx = {5, 6, 7, 8, 5, 6, 9, 10, 5, 6};
  d.Propose(ctx, 3, SamplingParams{}, {}, rng, draft, q);
  EXPECT_EQ(draft, (std::vector<int>{9, 10, 5}));  // after the latest earlier "5 6"
  ASSERT_EQ(q.size(), 3u);
  EXPECT_EQ(ProbabilityOf(q[0], 9), 1.0);
  // No 2-gram match: falls back to the last token alone.
  draft.clear();
  q.clear();
  d.Propose(std::vector<int>{4, 1, 2, 3, 1}, 4, SamplingParams{}, {}, rng, draft, q);
  EXPECT_EQ(draft, (std::vector<int>{2, 3, 1}));
  // Nothing matches: no proposal.
  draft.clear();
  q.clear();
  d.Propose(std::vector<int>{1, 2, 3}, 4, SamplingParams{}, {}, rng, draft, q);
  EXPECT_TRUE(draft.empty());
}

// ---- Sampled: the distribution ------------------------------------------------------------------

// Pearson's chi-squared of observed counts against probabilities (bins expected under 5 are
// pooled), and its degrees of freedom.
std::pair<double, int> ChiSquared(const std::map<int, int>& counts, const Candidates& p, int n) {
  double chi = 0, pooled_obs = 0, pooled_exp = 0;
  int bins = 0;
  for (const Candidate& c : p.data) {
    const double e = c.prob * n;
    const auto it = counts.find(c.id);
    const double o = it == counts.end() ? 0 : it->second;
    if (e < 5) {
      pooled_obs += o;
      pooled_exp += e;
      continue;
    }
    chi += (o - e) * (o - e) / e;
    ++bins;
  }
  if (pooled_exp > 0) {
    chi += (pooled_obs - pooled_exp) * (pooled_obs - pooled_exp) / pooled_exp;
    ++bins;
  }
  return {chi, bins - 1};
}

double TotalVariation(const std::map<int, int>& counts, const Candidates& p, int n) {
  double tv = 0, seen = 0;
  for (const Candidate& c : p.data) {
    const auto it = counts.find(c.id);
    const double f = it == counts.end() ? 0 : double(it->second) / n;
    tv += std::abs(f - c.prob);
    seen += f;
  }
  return 0.5 * (tv + (1 - seen));  // draws outside p's support count fully
}

// Twice the total variation that sampling noise alone gives on average (about
// sum sqrt(2 p (1 - p) / (pi n)) / 2), plus a little.
double NoiseTv(const Candidates& p, int n) {
  double s = 0;
  for (const Candidate& c : p.data) s += std::sqrt(2 * c.prob * (1 - c.prob) / (M_PI * n));
  return s + 0.005;
}

// A critical value far in the tail (about p = 1e-4): the seeds are fixed, so the test is
// deterministic, and a wrong rule (e.g. keeping every proposal) exceeds it by orders of magnitude.
double Critical(int dof) {
  return dof + 4.5 * std::sqrt(2.0 * dof) + 10;
}

Candidates Dist(const std::vector<float>& logits_in, const SamplingParams& sp) {
  std::vector<float> logits = logits_in;
  Candidates c;
  SamplingDistribution(sp, logits, {}, c);
  return c;
}

TEST(SpeculativeSampled, AcceptOrResampleEmitsTheTargetDistribution) {
  SamplingParams sp;
  sp.temperature = 1;
  sp.top_k = 0;
  sp.top_p = 1;
  sp.min_p = 0;
  const Candidates p = Dist({2.0f, 1.0f, 0.5f, 0.0f, -1.0f, 1.5f}, sp);
  const Candidates q = Dist({0.0f, 2.0f, 0.5f, 1.0f, 1.0f, -2.0f}, sp);
  const Candidates one_hot{{Candidate{3, 0, 1.0f}}, true};  // a prompt-lookup proposal
  for (const Candidates* qq : {&q, &one_hot}) {
    Rng rng(42);
    std::map<int, int> counts, proposed;
    const int n = 200000;
    int accepted_n = 0;
    for (int i = 0; i < n; ++i) {
      const int d = qq->data.size() == 1 ? qq->data[0].id : SampleFromDistribution(*qq, rng);
      bool accepted = false;
      ++counts[AcceptOrResample(p, *qq, d, rng, &accepted)];
      ++proposed[d];
      accepted_n += accepted;
    }
    const auto [chi, dof] = ChiSquared(counts, p, n);
    EXPECT_LT(chi, Critical(dof)) << "dof " << dof;
    // The test has power: keeping every proposal (the draft's distribution) fails it.
    EXPECT_GT(ChiSquared(proposed, p, n).first, 100 * Critical(dof));
    EXPECT_LT(TotalVariation(counts, p, n), NoiseTv(p, n));
    // The acceptance rate is sum min(p, q).
    double overlap = 0;
    for (const Candidate& c : qq->data) overlap += std::min<double>(c.prob, ProbabilityOf(p, c.id));
    EXPECT_NEAR(double(accepted_n) / n, overlap, 0.01);
  }
}

// The first token a step emits, over many steps from one context with a real draft model, is
// distributed as the target's processed distribution (default chain and a plain softmax).
TEST(SpeculativeSampled, StepWithADraftModelMatchesThePlainSampler) {
  const auto target = Conformance("a_tiny_qknorm_tied");
  const auto draft = Conformance("b_tiny_noqknorm_untied");
  const std::vector<int> history = {1, 17, 42, 99, 3, 17, 42, 7};
  SamplingParams plain_softmax;
  plain_softmax.temperature = 1.0f;
  plain_softmax.top_k = 0;
  plain_softmax.top_p = 1.0f;
  plain_softmax.min_p = 0.0f;
  SamplingParams chain;  // the defaults (top-k 40, top-p 0.95, min-p 0.05) at temperature 0.7
  chain.temperature = 0.7f;
  chain.repetition_penalty = 1.3f;
  for (const SamplingParams& sp : {plain_softmax, chain}) {
    Session s(target, 128);
    Feed(s, std::span<const int>(history).first(history.size() - 1));
    std::vector<float> logits;
    Session ref(target, 128);
    ref.Forward(history, logits);
    Candidates p;
    SamplingDistribution(sp, logits, history, p);
    SpeculativeDecoder spec(std::make_unique<DraftModelDrafter>(draft, *target, 128), 2, 99);
    spec.Begin(0, std::span<const int>(history).first(history.size() - 1));
    std::map<int, int> counts;
    const int n = 8000;
    const int base = s.position();
    for (int i = 0; i < n; ++i) {
      std::vector<int> out;
      spec.Step(s, history, sp, {}, 4, out, nullptr);
      ASSERT_FALSE(out.empty());
      ++counts[out[0]];
      s.Rewind(base);
    }
    const auto [chi, dof] = ChiSquared(counts, p, n);
    EXPECT_LT(chi, Critical(dof)) << "dof " << dof << ", temperature " << sp.temperature;
    EXPECT_LT(TotalVariation(counts, p, n), NoiseTv(p, n));
    EXPECT_GT(spec.stats().accepted, 0);
    EXPECT_LT(spec.stats().accepted, spec.stats().drafted);
  }
}

TEST(SpeculativeCli, GenerateFlagsKeepGreedyOutputAndRejectAMismatchedDraft) {
  const std::string tiny = std::string(ELM_SOURCE_DIR) + "/models/tiny-random-32k";
  const std::string base = "generate --model " + tiny +
                           " --temp 0 -n 24 --ignore-eos --output-ids -p 'The cat sat on the mat. "
                           "The cat sat on the'";
  std::string plain, out, err;
  ASSERT_EQ(test::RunElm(base, &plain, &err), 0) << err;
  for (const std::string& flags :
       std::vector<std::string>{" --lookup-ngram 2 --draft-max 4",
                                " --draft-model " + tiny + " --draft-weights q4_0 --draft-max 3"}) {
    ASSERT_EQ(test::RunElm(base + flags, &out, &err), 0) << err;
    EXPECT_EQ(out, plain) << flags;
    EXPECT_NE(err.find("[speculative: "), std::string::npos) << err;
  }
  EXPECT_NE(
      test::RunElm(base + " --draft-model " + test::DataDir() + "/conformance/a_tiny_qknorm_tied",
                   &out, &err),
      0);
  EXPECT_NE(err.find("same vocabulary"), std::string::npos) << err;
  EXPECT_NE(test::RunElm(base + " --lookup-ngram 2 --draft-max 0", &out, &err), 0);
  EXPECT_NE(err.find("--draft-max"), std::string::npos) << err;
}

}  // namespace speculative_test
}  // namespace elm
