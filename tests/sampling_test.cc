// Tests for src/sampling: each stage on hand-made inputs with exactly known answers, then the
// chained Sampler, then statistical checks that the draws follow the intended distribution.
#include "sampling/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/rng.h"

namespace elm {
namespace sampling_test {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Known 5-token distribution used throughout. Sorted best first it is
// id 2 (0.30), 4 (0.25), 1 (0.20), 3 (0.15), 0 (0.10).
const std::vector<double> kProbs = {0.10, 0.20, 0.30, 0.15, 0.25};

std::vector<float> LogitsOf(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

Candidates CandidatesOf(const std::vector<float>& logits) {
  Candidates c;
  InitCandidates(logits, c);
  return c;
}

std::vector<int> Ids(const Candidates& c) {
  std::vector<int> ids;
  for (const Candidate& x : c.data) ids.push_back(x.id);
  return ids;
}

// Reference full sort in the documented order: logit descending, then id ascending.
void SortBestFirst(Candidates& c) {
  std::sort(c.data.begin(), c.data.end(), [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  });
  c.sorted = true;
}

bool IsBestFirst(const Candidates& c) {
  return std::is_sorted(c.data.begin(), c.data.end(), [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  });
}

// ---- Rng ------------------------------------------------------------------------------------

TEST(SamplingRng, SplitMix64MatchesReferenceValue) {
  // First output of SplitMix64 from state 0, as published with the reference implementation.
  uint64_t state = 0;
  EXPECT_EQ(SplitMix64(state), 0xE220A8397B1DCDAFull);
}

TEST(SamplingRng, SeedRestartsStreamAndFloatsStayInUnitInterval) {
  Rng a(42), b(42), c(43);
  std::vector<uint64_t> first;
  for (int i = 0; i < 100; ++i) first.push_back(a.NextU64());
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(b.NextU64(), first[static_cast<size_t>(i)]);
    differs |= c.NextU64() != first[static_cast<size_t>(i)];
  }
  EXPECT_TRUE(differs);
  a.Seed(42);
  EXPECT_EQ(a.NextU64(), first[0]);

  Rng r(7);
  double sum = 0;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    const float f = r.NextFloat();
    const double d = r.NextDouble();
    ASSERT_GE(f, 0.0f);
    ASSERT_LT(f, 1.0f);
    ASSERT_GE(d, 0.0);
    ASSERT_LT(d, 1.0);
    sum += d;
  }
  // Mean of U(0,1) has standard error 1/sqrt(12 n) ~ 0.0009.
  EXPECT_NEAR(sum / n, 0.5, 0.004);
}

// ---- Greedy ---------------------------------------------------------------------------------

TEST(SamplingGreedy, PicksFirstMaximumOnTies) {
  EXPECT_EQ(Greedy(std::vector<float>{1, 3, 2, 3}), 1);
  EXPECT_EQ(Greedy(std::vector<float>{7, 7, 7}), 0);
  EXPECT_EQ(Greedy(std::vector<float>{-5, -1, -1}), 1);
}

TEST(SamplingGreedy, NonFiniteLogits) {
  EXPECT_EQ(Greedy(std::vector<float>{kNaN, 1, 2, kNaN}), 2);
  EXPECT_EQ(Greedy(std::vector<float>{1, kInf, 2, kInf}), 1);
  EXPECT_EQ(Greedy(std::vector<float>{-kInf, -kInf, kNaN}), 0);  // nothing possible: index 0
  EXPECT_EQ(Greedy(std::vector<float>{}), 0);
}

TEST(SamplingGreedy, MatchesScalarReferenceOnLongInputs) {
  // Long enough for the blocked (SIMD) passes; ties, NaN and infinities at random places.
  Rng rng(31);
  for (int trial = 0; trial < 300; ++trial) {
    const size_t n = static_cast<size_t>(rng.NextU64() % 200);
    std::vector<float> l(n);
    for (float& x : l) {
      const uint64_t r = rng.NextU64() % 50;
      x = r == 0                       ? kNaN
          : r == 1                     ? -kInf
          : (r == 2 && trial % 3 == 0) ? kInf
                                       : static_cast<float>(r % 9);
      if (trial % 5 == 0) x = r < 40 ? -kInf : kNaN;  // nothing possible: expect 0
    }
    int expected = 0;
    float best = -kInf;
    for (size_t i = 0; i < n; ++i) {
      if (l[i] > best) {
        best = l[i];
        expected = static_cast<int>(i);
      }
    }
    ASSERT_EQ(Greedy(l), expected) << "trial " << trial;
  }
}

// ---- Penalties ------------------------------------------------------------------------------

TEST(SamplingPenalty, RepetitionDividesPositiveMultipliesNonPositive) {
  std::vector<float> l = {3.0f, -3.0f, 0.0f, 4.0f, 1.0f};
  const std::vector<int> history = {0, 1, 2};
  ApplyRepetitionPenalty(l, history, 1.5f, -1);
  EXPECT_EQ(l, (std::vector<float>{2.0f, -4.5f, 0.0f, 4.0f, 1.0f}));
}

TEST(SamplingPenalty, RepetitionAppliesOncePerDistinctToken) {
  std::vector<float> l = {8.0f, -1.0f, 5.0f};
  const std::vector<int> history = {0, 0, 0, 1, 0, 1};
  ApplyRepetitionPenalty(l, history, 2.0f, -1);
  EXPECT_EQ(l, (std::vector<float>{4.0f, -2.0f, 5.0f}));
}

TEST(SamplingPenalty, RepetitionOnlyConsidersWindow) {
  const std::vector<int> history = {3, 0, 1};  // window 2 sees {0, 1}
  std::vector<float> l = {2.0f, 2.0f, 2.0f, 2.0f};
  ApplyRepetitionPenalty(l, history, 2.0f, 2);
  EXPECT_EQ(l, (std::vector<float>{1.0f, 1.0f, 2.0f, 2.0f}));

  std::vector<float> none = {2.0f, 2.0f, 2.0f, 2.0f};
  ApplyRepetitionPenalty(none, history, 2.0f, 0);
  EXPECT_EQ(none, (std::vector<float>{2.0f, 2.0f, 2.0f, 2.0f}));

  std::vector<float> bigger = {2.0f, 2.0f, 2.0f, 2.0f};  // window larger than history: all
  ApplyRepetitionPenalty(bigger, history, 2.0f, 100);
  EXPECT_EQ(bigger, (std::vector<float>{1.0f, 1.0f, 2.0f, 1.0f}));
}

TEST(SamplingPenalty, OutOfVocabularyHistoryIdsAreIgnored) {
  std::vector<float> l = {2.0f, 2.0f};
  const std::vector<int> history = {-1, 2, 1000, 1};
  ApplyRepetitionPenalty(l, history, 2.0f, -1);
  ApplyPresenceFrequencyPenalty(l, history, 0.5f, 0.25f, -1);
  EXPECT_EQ(l, (std::vector<float>{2.0f, 0.25f}));
}

TEST(SamplingPenalty, PresenceAndFrequencyArithmetic) {
  std::vector<float> l(4, 0.0f);
  const std::vector<int> history = {1, 1, 2, 1};
  ApplyPresenceFrequencyPenalty(l, history, 0.5f, 0.25f, -1);
  // token 1: 3 * 0.25 + 0.5, token 2: 1 * 0.25 + 0.5, others untouched.
  EXPECT_EQ(l, (std::vector<float>{0.0f, -1.25f, -0.75f, 0.0f}));

  std::vector<float> w(4, 1.0f);
  ApplyPresenceFrequencyPenalty(w, history, 1.0f, 0.5f, 2);  // window {2, 1}
  EXPECT_EQ(w, (std::vector<float>{1.0f, -0.5f, -0.5f, 1.0f}));

  std::vector<float> only_freq(4, 0.0f);
  ApplyPresenceFrequencyPenalty(only_freq, history, 0.0f, 1.0f, -1);
  EXPECT_EQ(only_freq, (std::vector<float>{0.0f, -3.0f, -1.0f, 0.0f}));

  std::vector<float> negative(4, 0.0f);  // negative values encourage repetition
  ApplyPresenceFrequencyPenalty(negative, history, -1.0f, 0.0f, -1);
  EXPECT_EQ(negative, (std::vector<float>{0.0f, 1.0f, 1.0f, 0.0f}));
}

TEST(SamplingPenalty, SamplerAppliesRepetitionThenPresenceFrequency) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.repetition_penalty = 2.0f;
  p.presence_penalty = 1.0f;
  p.frequency_penalty = 0.5f;
  p.repetition_window = -1;
  Sampler s(p);
  std::vector<float> l = {4.0f, 2.5f, -1.0f};
  const std::vector<int> history = {0, 0, 2};
  EXPECT_EQ(s.Sample(l, history), 1);
  // 4 / 2 - (2 * 0.5 + 1) = 0; 2.5 untouched; -1 * 2 - (0.5 + 1) = -3.5.
  EXPECT_EQ(l, (std::vector<float>{0.0f, 2.5f, -3.5f}));
}

// ---- Candidates -----------------------------------------------------------------------------

TEST(SamplingCandidates, InitDropsImpossibleTokens) {
  Candidates c = CandidatesOf({1.0f, kNaN, -kInf, -3.0f});
  EXPECT_EQ(Ids(c), (std::vector<int>{0, 3}));
  EXPECT_FALSE(c.sorted);
  EXPECT_TRUE(CandidatesOf({-kInf, kNaN}).data.empty());
}

TEST(SamplingCandidates, PositiveInfinityKeepsOnlyInfiniteTokensUniformly) {
  Candidates c = CandidatesOf({1.0f, kInf, 2.0f, kInf});
  EXPECT_EQ(Ids(c), (std::vector<int>{1, 3}));
  Softmax(c);
  EXPECT_FLOAT_EQ(c.data[0].prob, 0.5f);
  EXPECT_FLOAT_EQ(c.data[1].prob, 0.5f);
}

// ---- Top-k ----------------------------------------------------------------------------------

TEST(SamplingTopK, KeepsTheKBestSorted) {
  Candidates c = CandidatesOf({1, 5, 3, 6, 2});
  TopK(c, 2);
  EXPECT_EQ(Ids(c), (std::vector<int>{3, 1}));
  EXPECT_TRUE(c.sorted);
  TopK(c, 1);
  EXPECT_EQ(Ids(c), (std::vector<int>{3}));
}

TEST(SamplingTopK, TiesAtTheCutKeepLowerIds) {
  Candidates c = CandidatesOf({1, 4, 4, 4, 0, 4});
  TopK(c, 2);
  EXPECT_EQ(Ids(c), (std::vector<int>{1, 2}));
  Candidates d = CandidatesOf({4, 4, 4, 4});
  TopK(d, 3);
  EXPECT_EQ(Ids(d), (std::vector<int>{0, 1, 2}));
}

TEST(SamplingTopK, ZeroOrLargeKIsANoOp) {
  Candidates c = CandidatesOf({1, 5, 3});
  TopK(c, 0);
  EXPECT_EQ(Ids(c), (std::vector<int>{0, 1, 2}));
  TopK(c, 3);
  EXPECT_EQ(Ids(c), (std::vector<int>{0, 1, 2}));
  TopK(c, 1000);
  EXPECT_EQ(Ids(c), (std::vector<int>{0, 1, 2}));
}

TEST(SamplingTopK, OnePassSelectionMatchesInitThenTopK) {
  Rng rng(99);
  for (int trial = 0; trial < 200; ++trial) {
    const size_t n = 1 + static_cast<size_t>(rng.NextU64() % 500);
    std::vector<float> l(n);
    for (float& x : l) {
      // Few distinct values (many ties) plus the occasional NaN / -inf / +inf.
      const uint64_t r = rng.NextU64() % 100;
      x = r == 0                       ? kNaN
          : r == 1                     ? -kInf
          : (r == 2 && trial % 4 == 0) ? kInf
                                       : static_cast<float>(r % 7);
    }
    const int k = static_cast<int>(rng.NextU64() % (n + 2));
    Candidates one_pass;
    InitTopKCandidates(l, k, one_pass);
    Candidates two_step = CandidatesOf(l);
    TopK(two_step, k);
    // When k does not shorten the list TopK leaves it unsorted; the one-pass version sorts
    // whenever 0 < k < n.
    ASSERT_TRUE(one_pass.sorted || k <= 0 || static_cast<size_t>(k) >= n);
    ASSERT_TRUE(!one_pass.sorted || IsBestFirst(one_pass)) << "trial " << trial;
    // Compare as sets in one canonical order (a no-op for lists that are already sorted).
    SortBestFirst(one_pass);
    SortBestFirst(two_step);
    ASSERT_EQ(Ids(one_pass), Ids(two_step)) << "trial " << trial << " k " << k;
    for (size_t i = 0; i < one_pass.data.size(); ++i) {
      ASSERT_EQ(one_pass.data[i].logit, two_step.data[i].logit);
    }
  }
}

// ---- Top-p ----------------------------------------------------------------------------------

TEST(SamplingTopP, KeepsSmallestPrefixReachingP) {
  const std::vector<float> l = LogitsOf(kProbs);
  auto top_p = [&](float p) {
    Candidates c = CandidatesOf(l);
    TopP(c, p);
    EXPECT_TRUE(c.sorted);
    return Ids(c);
  };
  EXPECT_EQ(top_p(0.01f), (std::vector<int>{2}));  // always at least one token
  EXPECT_EQ(top_p(0.30f), (std::vector<int>{2}));  // exactly reached by the first
  EXPECT_EQ(top_p(0.31f), (std::vector<int>{2, 4}));
  EXPECT_EQ(top_p(0.50f), (std::vector<int>{2, 4}));
  EXPECT_EQ(top_p(0.55f), (std::vector<int>{2, 4}));  // 0.30 + 0.25 exactly
  EXPECT_EQ(top_p(0.56f), (std::vector<int>{2, 4, 1}));
  EXPECT_EQ(top_p(0.90f), (std::vector<int>{2, 4, 1, 3}));
  EXPECT_EQ(top_p(0.95f), (std::vector<int>{2, 4, 1, 3, 0}));
  EXPECT_EQ(top_p(0.9999f), (std::vector<int>{2, 4, 1, 3, 0}));
}

TEST(SamplingTopP, OneIsOff) {
  Candidates c = CandidatesOf(LogitsOf(kProbs));
  TopP(c, 1.0f);
  EXPECT_EQ(Ids(c), (std::vector<int>{0, 1, 2, 3, 4}));  // untouched, not even sorted
  EXPECT_FALSE(c.sorted);
}

TEST(SamplingTopP, TiesKeepLowerIds) {
  Candidates c = CandidatesOf({0, 0, 0, 0});  // uniform 0.25 each
  TopP(c, 0.5f);
  EXPECT_EQ(Ids(c), (std::vector<int>{0, 1}));
  Candidates d = CandidatesOf({0, 0, 0, 0});
  TopP(d, 0.6f);
  EXPECT_EQ(Ids(d), (std::vector<int>{0, 1, 2}));
}

TEST(SamplingTopP, WorksAfterTopKOnTheTruncatedDistribution) {
  // After top-k = 2 the survivors are 0.30 and 0.25, renormalized to 0.545 and 0.455.
  Candidates c = CandidatesOf(LogitsOf(kProbs));
  TopK(c, 2);
  TopP(c, 0.5f);
  EXPECT_EQ(Ids(c), (std::vector<int>{2}));
  Candidates d = CandidatesOf(LogitsOf(kProbs));
  TopK(d, 2);
  TopP(d, 0.6f);
  EXPECT_EQ(Ids(d), (std::vector<int>{2, 4}));
}

TEST(SamplingTopP, LargeNucleusOfTies) {
  // 1000 equal tokens, all in one histogram bucket: the nucleus for 0.5 is exactly ids 0..499.
  Candidates c = CandidatesOf(std::vector<float>(1000, 1.0f));
  TopP(c, 0.5f);
  std::vector<int> expected(500);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(Ids(c), expected);
}

TEST(SamplingTopP, PrefilteredSortMatchesFullSort) {
  Rng rng(123);
  for (int trial = 0; trial < 50; ++trial) {
    const size_t n = 50 + static_cast<size_t>(rng.NextU64() % 3000);
    std::vector<float> l(n);
    // Coarse values create many ties; the scale varies the nucleus from tiny to huge.
    const float scale = 0.1f + 8.0f * rng.NextFloat();
    for (float& x : l) x = std::round(scale * 8.0f * rng.NextFloat()) / 8.0f;
    const float p = 0.05f + 0.9f * rng.NextFloat();
    Candidates prefiltered = CandidatesOf(l);
    TopP(prefiltered, p);
    Candidates full = CandidatesOf(l);
    SortBestFirst(full);
    TopP(full, p);
    ASSERT_EQ(Ids(prefiltered), Ids(full)) << "trial " << trial;
  }
}

// ---- Min-p ----------------------------------------------------------------------------------

TEST(SamplingMinP, KeepsTokensAboveFractionOfMax) {
  const std::vector<float> l = LogitsOf(kProbs);
  auto min_p = [&](float m) {
    Candidates c = CandidatesOf(l);
    MinP(c, m);
    return Ids(c);  // order is preserved (unsorted input stays in id order)
  };
  // Ratios to the max (0.30): id0 1/3, id1 2/3, id2 1, id3 1/2, id4 5/6.
  EXPECT_EQ(min_p(0.0f), (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_EQ(min_p(0.34f), (std::vector<int>{1, 2, 3, 4}));
  EXPECT_EQ(min_p(0.5f), (std::vector<int>{1, 2, 3, 4}));  // 0.15 / 0.30 is exactly 0.5
  EXPECT_EQ(min_p(0.6f), (std::vector<int>{1, 2, 4}));
  EXPECT_EQ(min_p(0.9f), (std::vector<int>{2}));
  EXPECT_EQ(min_p(1.0f), (std::vector<int>{2}));
}

TEST(SamplingMinP, OneKeepsAllTiedMaximaAndSortednessIsPreserved) {
  Candidates c = CandidatesOf({1, 3, 3, 0, 3});
  MinP(c, 1.0f);
  EXPECT_EQ(Ids(c), (std::vector<int>{1, 2, 4}));
  Candidates d = CandidatesOf(LogitsOf(kProbs));
  TopK(d, 5 - 1);  // sorted: 2, 4, 1, 3
  MinP(d, 0.6f);
  EXPECT_TRUE(d.sorted);
  EXPECT_EQ(Ids(d), (std::vector<int>{2, 4, 1}));
}

// ---- Temperature and softmax ----------------------------------------------------------------

TEST(SamplingTemperature, ScalesLogitDifferences) {
  Candidates c = CandidatesOf({1, 2, 4});
  ApplyTemperature(c, 0.5f);
  EXPECT_EQ(c.data[0].logit, -6.0f);
  EXPECT_EQ(c.data[1].logit, -4.0f);
  EXPECT_EQ(c.data[2].logit, 0.0f);
  Candidates d = CandidatesOf({1, 2, 4});
  ApplyTemperature(d, 2.0f);
  EXPECT_EQ(d.data[0].logit, -1.5f);
  EXPECT_EQ(d.data[1].logit, -1.0f);
  EXPECT_EQ(d.data[2].logit, 0.0f);
  Softmax(d);
  const double z = std::exp(0.5) + std::exp(1.0) + std::exp(2.0);  // exp(l / 2)
  EXPECT_NEAR(d.data[0].prob, std::exp(0.5) / z, 1e-6);
  EXPECT_NEAR(d.data[1].prob, std::exp(1.0) / z, 1e-6);
  EXPECT_NEAR(d.data[2].prob, std::exp(2.0) / z, 1e-6);
}

TEST(SamplingTemperature, TinyTemperatureDoesNotOverflowAndZeroIsGreedy) {
  Candidates c = CandidatesOf({1, 30, 2});
  ApplyTemperature(c, 1e-30f);
  Softmax(c);
  EXPECT_EQ(c.data[1].prob, 1.0f);
  EXPECT_EQ(c.data[0].prob, 0.0f);

  Candidates g = CandidatesOf({1, 5, 3, 5});
  ApplyTemperature(g, 0.0f);
  EXPECT_EQ(Ids(g), (std::vector<int>{1}));
}

TEST(SamplingSoftmax, NormalizesAndMatchesDefinition) {
  Candidates c = CandidatesOf(LogitsOf(kProbs));
  Softmax(c);
  double sum = 0;
  for (size_t i = 0; i < kProbs.size(); ++i) {
    EXPECT_NEAR(c.data[i].prob, kProbs[i], 1e-6);
    sum += c.data[i].prob;
  }
  EXPECT_NEAR(sum, 1.0, 1e-6);
  Candidates big = CandidatesOf({1000.0f, 999.0f});  // no overflow thanks to max subtraction
  Softmax(big);
  EXPECT_NEAR(big.data[0].prob, 1.0 / (1.0 + std::exp(-1.0)), 1e-6);
}

// ---- Statistics -----------------------------------------------------------------------------

constexpr int kDraws = 200000;

// Checks observed counts against expected probabilities: every bucket within 4 standard errors
// (binomial z-score), buckets with probability 0 never drawn, and Pearson's chi-square below the
// 1e-4 critical value (so a failure is overwhelmingly a bug, not bad luck; seeds are fixed anyway).
void ExpectMatchesDistribution(const std::vector<int>& counts, const std::vector<double>& probs) {
  ASSERT_EQ(counts.size(), probs.size());
  const double n = std::accumulate(counts.begin(), counts.end(), 0.0);
  double chi2 = 0;
  int dof = -1;
  for (size_t i = 0; i < probs.size(); ++i) {
    const double p = probs[i];
    if (p == 0.0) {
      EXPECT_EQ(counts[i], 0) << "bucket " << i << " should be impossible";
      continue;
    }
    const double expected = n * p;
    const double z = (counts[i] - expected) / std::sqrt(n * p * (1 - p));
    EXPECT_LT(std::abs(z), 4.0) << "bucket " << i << ": " << counts[i] << " vs " << expected;
    chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
    ++dof;
  }
  // Chi-square critical values at p = 1e-4 for 1..4 degrees of freedom.
  const double critical[] = {0, 15.14, 18.42, 21.11, 23.51};
  ASSERT_GE(dof, 1);
  ASSERT_LE(dof, 4);
  EXPECT_LT(chi2, critical[dof]) << "chi-square, dof " << dof;
}

std::vector<double> Normalize(std::vector<double> w) {
  const double s = std::accumulate(w.begin(), w.end(), 0.0);
  for (double& x : w) x /= s;
  return w;
}

std::vector<int> CountSamples(const SamplingParams& p, const std::vector<float>& logits) {
  Sampler s(p);
  std::vector<int> counts(logits.size(), 0);
  std::vector<float> scratch;
  for (int i = 0; i < kDraws; ++i) {
    scratch = logits;
    ++counts[static_cast<size_t>(s.Sample(scratch, {}))];
  }
  return counts;
}

SamplingParams PlainParams() {  // temperature 1, every filter off
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  return p;
}

TEST(SamplingStatistics, SampleFromDistributionMatchesProbabilities) {
  const std::vector<float> probs(kProbs.begin(), kProbs.end());
  Rng rng(2024);
  std::vector<int> counts(probs.size(), 0);
  for (int i = 0; i < kDraws; ++i)
    ++counts[static_cast<size_t>(SampleFromDistribution(probs, rng))];
  ExpectMatchesDistribution(counts, kProbs);
}

TEST(SamplingStatistics, UnnormalizedWeightsAndZeros) {
  const std::vector<float> w = {0.0f, 3.0f, kNaN, 1.0f, -2.0f};
  Rng rng(5);
  std::vector<int> counts(w.size(), 0);
  for (int i = 0; i < kDraws; ++i) ++counts[static_cast<size_t>(SampleFromDistribution(w, rng))];
  ExpectMatchesDistribution(counts, {0, 0.75, 0, 0.25, 0});
}

TEST(SamplingStatistics, FullChainWithoutFiltersMatchesSoftmax) {
  ExpectMatchesDistribution(CountSamples(PlainParams(), LogitsOf(kProbs)), kProbs);
}

TEST(SamplingStatistics, TopKRenormalizes) {
  SamplingParams p = PlainParams();
  p.top_k = 2;
  ExpectMatchesDistribution(CountSamples(p, LogitsOf(kProbs)), Normalize({0, 0, 0.30, 0, 0.25}));
}

TEST(SamplingStatistics, TopPRenormalizes) {
  SamplingParams p = PlainParams();
  p.top_p = 0.7f;  // cumulative 0.30, 0.55, 0.75: keeps ids 2, 4, 1
  ExpectMatchesDistribution(CountSamples(p, LogitsOf(kProbs)), Normalize({0, 0.20, 0.30, 0, 0.25}));
}

TEST(SamplingStatistics, MinPRenormalizes) {
  SamplingParams p = PlainParams();
  p.min_p = 0.6f;  // ratios 1/3, 2/3, 1, 1/2, 5/6: keeps ids 1, 2, 4
  ExpectMatchesDistribution(CountSamples(p, LogitsOf(kProbs)), Normalize({0, 0.20, 0.30, 0, 0.25}));
}

TEST(SamplingStatistics, TemperatureReshapes) {
  SamplingParams p = PlainParams();
  p.temperature = 2.0f;  // p_i^(1/2), renormalized
  std::vector<double> expected;
  for (double q : kProbs) expected.push_back(std::sqrt(q));
  ExpectMatchesDistribution(CountSamples(p, LogitsOf(kProbs)), Normalize(expected));
}

TEST(SamplingStatistics, DefaultChain) {
  // Defaults: top_k 40 (no-op on 5 tokens), top_p 0.95 (cumulative reaches 0.90 after four
  // tokens, so all five stay), min_p 0.05 (smallest ratio is 1/3: all stay), temperature 0.8.
  std::vector<double> expected;
  for (double q : kProbs) expected.push_back(std::pow(q, 1.0 / 0.8));
  ExpectMatchesDistribution(CountSamples(SamplingParams{}, LogitsOf(kProbs)), Normalize(expected));
}

TEST(SamplingStatistics, StackedFilters) {
  // top_k 4 drops id 0; top_p 0.6 on {0.30, 0.25, 0.20, 0.15} / 0.9 (cumulative 0.333, 0.611)
  // keeps ids 2, 4; min_p 0.5 keeps both (ratio 5/6); temperature 0.5 squares: 0.09 vs 0.0625.
  SamplingParams p;
  p.top_k = 4;
  p.top_p = 0.6f;
  p.min_p = 0.5f;
  p.temperature = 0.5f;
  ExpectMatchesDistribution(CountSamples(p, LogitsOf(kProbs)), Normalize({0, 0, 0.09, 0, 0.0625}));
}

// ---- Sampler --------------------------------------------------------------------------------

std::vector<float> RandomLogits(size_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> l(n);
  for (float& x : l) x = 6.0f * rng.NextFloat();
  return l;
}

std::vector<int> Generate(Sampler& s, int steps) {
  std::vector<int> history = {1, 2, 3};
  for (int i = 0; i < steps; ++i) {
    std::vector<float> l = RandomLogits(1000, static_cast<uint64_t>(i));
    history.push_back(s.Sample(l, history));
  }
  return history;
}

TEST(SamplingSampler, FixedSeedReproducesDifferentSeedsDiffer) {
  SamplingParams p;
  p.repetition_penalty = 1.3f;
  p.frequency_penalty = 0.1f;
  Sampler a(p), b(p);
  const std::vector<int> run = Generate(a, 200);
  EXPECT_EQ(Generate(b, 200), run);

  SamplingParams q = p;
  q.seed = p.seed + 1;
  Sampler c(q);
  EXPECT_NE(Generate(c, 200), run);

  a.Reseed(p.seed);  // back to the start of the stream
  EXPECT_EQ(Generate(a, 200), run);
  EXPECT_EQ(a.params().seed, p.seed);
}

TEST(SamplingSampler, GreedyIgnoresFiltersAndRandomness) {
  SamplingParams p;
  p.temperature = 0.0f;
  Sampler s(p);
  for (int i = 0; i < 10; ++i) {
    std::vector<float> l = {0.5f, 2.0f, 2.0f, -1.0f};
    EXPECT_EQ(s.Sample(l, {}), 1);
  }
}

TEST(SamplingSampler, NonFiniteLogits) {
  Sampler s(SamplingParams{});
  std::vector<float> all_impossible = {-kInf, kNaN, -kInf};
  EXPECT_EQ(s.Sample(all_impossible, {}), 0);

  for (int i = 0; i < 200; ++i) {
    std::vector<float> l = {kNaN, 1.0f, -kInf, 1.0f, kNaN};
    const int t = s.Sample(l, {});
    EXPECT_TRUE(t == 1 || t == 3) << t;
    std::vector<float> inf = {5.0f, kInf, 7.0f, kInf};
    const int u = s.Sample(inf, {});
    EXPECT_TRUE(u == 1 || u == 3) << u;
  }
  std::vector<float> empty;
  EXPECT_THROW(s.Sample(empty, {}), Error);
}

TEST(SamplingSampler, WindowMinusOneUsesWholeHistory) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.repetition_penalty = 10.0f;
  p.repetition_window = -1;
  Sampler s(p);
  std::vector<int> history(1000, 7);
  history[0] = 1;  // far outside any small window, still penalized with -1
  std::vector<float> l = {0.0f, 5.0f, 1.0f};
  EXPECT_EQ(s.Sample(l, history), 2);
}

// ---- Validation -----------------------------------------------------------------------------

void ExpectRejected(const SamplingParams& p, const std::string& name) {
  try {
    Sampler s(p);
    ADD_FAILURE() << "accepted invalid " << name;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
  }
}

TEST(SamplingParamsValidation, RejectsInvalidValues) {
  auto with = [](auto setter) {
    SamplingParams p;
    setter(p);
    return p;
  };
  ExpectRejected(with([](SamplingParams& p) { p.temperature = -0.1f; }), "temperature");
  ExpectRejected(with([](SamplingParams& p) { p.temperature = kNaN; }), "temperature");
  ExpectRejected(with([](SamplingParams& p) { p.temperature = kInf; }), "temperature");
  ExpectRejected(with([](SamplingParams& p) { p.top_k = -1; }), "top_k");
  ExpectRejected(with([](SamplingParams& p) { p.top_p = 0.0f; }), "top_p");
  ExpectRejected(with([](SamplingParams& p) { p.top_p = 1.01f; }), "top_p");
  ExpectRejected(with([](SamplingParams& p) { p.top_p = kNaN; }), "top_p");
  ExpectRejected(with([](SamplingParams& p) { p.min_p = -0.01f; }), "min_p");
  ExpectRejected(with([](SamplingParams& p) { p.min_p = 1.5f; }), "min_p");
  ExpectRejected(with([](SamplingParams& p) { p.min_p = kNaN; }), "min_p");
  ExpectRejected(with([](SamplingParams& p) { p.repetition_penalty = 0.0f; }),
                 "repetition_penalty");
  ExpectRejected(with([](SamplingParams& p) { p.repetition_penalty = -1.0f; }),
                 "repetition_penalty");
  ExpectRejected(with([](SamplingParams& p) { p.repetition_penalty = kNaN; }),
                 "repetition_penalty");
  ExpectRejected(with([](SamplingParams& p) { p.repetition_window = -2; }), "repetition_window");
  ExpectRejected(with([](SamplingParams& p) { p.presence_penalty = kNaN; }), "presence_penalty");
  ExpectRejected(with([](SamplingParams& p) { p.frequency_penalty = -kInf; }), "frequency_penalty");
}

TEST(SamplingParamsValidation, AcceptsBoundaryValues) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.repetition_window = -1;
  EXPECT_NO_THROW(ValidateSamplingParams(p));
  p.min_p = 1.0f;
  p.top_p = 1e-6f;
  p.repetition_window = 0;
  p.presence_penalty = -2.0f;
  p.frequency_penalty = 2.0f;
  EXPECT_NO_THROW(ValidateSamplingParams(p));
}

}  // namespace sampling_test
}  // namespace elm
