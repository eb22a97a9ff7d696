#include "sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "base/error.h"

namespace elm {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Slack for the ">= p" and ">= min_p" comparisons of TopP / MinP. Float logits carry ~1e-7
// relative precision, so probabilities that are equal on paper (0.5 + 0.3 vs 0.8) can land on
// either side of the threshold; 1e-6 puts them on the side the user meant.
constexpr double kThresholdSlack = 1e-6;

// Best-first order: higher logit, then lower id. A strict total order (given no NaN), so sorts and
// selections give the same result on every standard library. A function object rather than a
// function so that std::sort & co. inline it instead of calling through a pointer.
constexpr struct {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  }
} Better;

float MaxLogit(const Candidates& c) {
  if (c.sorted) return c.data.front().logit;
  float m = -kInf;
  for (const Candidate& x : c.data) m = std::max(m, x.logit);
  return m;
}

// The distinct in-vocabulary tokens among the last `window` entries of history, as (id, count)
// pairs sorted by id. Sorting a copy of the window (64 tokens by default) is cheaper than touching
// a V-sized count array, and does not need one.
std::vector<std::pair<int, int>> CountWindow(std::span<const int> history, int window,
                                             size_t vocab) {
  std::vector<std::pair<int, int>> counts;
  if (window == 0 || history.empty()) return counts;
  if (window > 0 && static_cast<size_t>(window) < history.size()) {
    history = history.last(static_cast<size_t>(window));
  }
  std::vector<int> ids;
  ids.reserve(history.size());
  for (int id : history) {
    if (id >= 0 && static_cast<size_t>(id) < vocab) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  for (size_t i = 0; i < ids.size();) {
    size_t j = i;
    while (j < ids.size() && ids[j] == ids[i]) ++j;
    counts.emplace_back(ids[i], static_cast<int>(j - i));
    i = j;
  }
  return counts;
}

void CheckFinite(const char* name, float v) {
  if (!std::isfinite(v)) Fail("sampling parameter ", name, " must be a finite number, got ", v);
}

}  // namespace

void ValidateSamplingParams(const SamplingParams& p) {
  // Range checks are written as !(in range) so that NaN, which fails every comparison, is caught
  // by them too.
  CheckFinite("temperature", p.temperature);
  if (!(p.temperature >= 0.0f)) {
    Fail("sampling parameter temperature must be >= 0 (0 = greedy), got ", p.temperature);
  }
  if (p.top_k < 0) Fail("sampling parameter top_k must be >= 0 (0 = off), got ", p.top_k);
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    Fail("sampling parameter top_p must be in (0, 1] (1 = off), got ", p.top_p);
  }
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) {
    Fail("sampling parameter min_p must be in [0, 1] (0 = off), got ", p.min_p);
  }
  CheckFinite("repetition_penalty", p.repetition_penalty);
  if (!(p.repetition_penalty > 0.0f)) {
    Fail("sampling parameter repetition_penalty must be > 0 (1 = off), got ", p.repetition_penalty);
  }
  if (p.repetition_window < -1) {
    Fail("sampling parameter repetition_window must be >= -1 (-1 = whole history), got ",
         p.repetition_window);
  }
  CheckFinite("presence_penalty", p.presence_penalty);
  CheckFinite("frequency_penalty", p.frequency_penalty);
}

void ApplyRepetitionPenalty(std::span<float> logits, std::span<const int> history, float penalty,
                            int window) {
  if (penalty == 1.0f) return;
  for (const auto& [id, count] : CountWindow(history, window, logits.size())) {
    float& l = logits[static_cast<size_t>(id)];
    l = l > 0.0f ? l / penalty : l * penalty;
  }
}

void ApplyPresenceFrequencyPenalty(std::span<float> logits, std::span<const int> history,
                                   float presence, float frequency, int window) {
  if (presence == 0.0f && frequency == 0.0f) return;
  for (const auto& [id, count] : CountWindow(history, window, logits.size())) {
    logits[static_cast<size_t>(id)] -= frequency * static_cast<float>(count) + presence;
  }
}

int Greedy(std::span<const float> logits) {
  // Two passes instead of one tracking the index, each written as fixed-width blocks of
  // independent lanes that the compiler turns into packed SIMD instructions (a plain max loop is
  // not vectorized without -ffast-math). `m < x ? x : m` never lets NaN win: comparisons with
  // NaN are false.
  constexpr size_t kLanes = 16;
  const size_t n = logits.size();
  const float* l = logits.data();
  float lane_max[kLanes];
  std::fill(lane_max, lane_max + kLanes, -kInf);
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (size_t j = 0; j < kLanes; ++j) {
      lane_max[j] = lane_max[j] < l[i + j] ? l[i + j] : lane_max[j];
    }
  }
  float m = -kInf;
  for (const float x : lane_max) m = m < x ? x : m;
  for (; i < n; ++i) m = m < l[i] ? l[i] : m;
  if (m == -kInf) return 0;  // empty, or nothing possible: documented fallback

  // First index holding the maximum: find the block, then the lane.
  for (i = 0; i + kLanes <= n; i += kLanes) {
    int hits = 0;  // an int sum of comparisons vectorizes; a bool OR does not
    for (size_t j = 0; j < kLanes; ++j) hits += l[i + j] == m;
    if (hits != 0) break;
  }
  for (; i < n; ++i) {
    if (l[i] == m) return static_cast<int>(i);
  }
  return 0;  // unreachable: m is one of the logits
}

void InitCandidates(std::span<const float> logits, Candidates& out) {
  out.data.clear();
  out.sorted = false;
  out.data.reserve(logits.size());
  bool any_pos_inf = false;
  for (size_t i = 0; i < logits.size(); ++i) {
    const float l = logits[i];
    // l > -inf is false for NaN and -inf: both are impossible tokens.
    if (l > -kInf) {
      out.data.push_back({static_cast<int>(i), l});
      any_pos_inf |= (l == kInf);
    }
  }
  if (any_pos_inf) {
    // +inf - +inf is NaN, so the usual max-subtraction cannot handle it; the limit of the softmax
    // as those logits grow is uniform over the +inf tokens, which is what we keep.
    std::erase_if(out.data, [](const Candidate& c) { return c.logit != kInf; });
    for (Candidate& c : out.data) c.logit = 0.0f;
  }
}

void InitTopKCandidates(std::span<const float> logits, int k, Candidates& out) {
  if (k <= 0 || static_cast<size_t>(k) >= logits.size()) {
    InitCandidates(logits, out);
    return;
  }
  const size_t kk = static_cast<size_t>(k);
  // The buffer collects contenders; when it reaches `cap` it is cut back to the k best with
  // nth_element, and the k-th best logit becomes the bar a newcomer must beat. Appending is much
  // cheaper than keeping a heap: the bar rises quickly, and after a few cuts almost nothing
  // passes it.
  const size_t cap = 2 * kk + 64;
  std::vector<Candidate>& buf = out.data;
  buf.clear();
  buf.reserve(cap);
  out.sorted = false;
  float bar = -kInf;  // -inf also rejects NaN and -inf logits
  auto cut_to_k = [&] {
    const auto kth = buf.begin() + static_cast<ptrdiff_t>(kk);
    std::nth_element(buf.begin(), kth - 1, buf.end(), Better);
    buf.erase(kth, buf.end());
    bar = buf.back().logit;  // the k-th best, placed at index k-1 by nth_element
  };
  // Ids arrive in increasing order, so a newcomer whose logit equals the bar loses the id
  // tie-break against all k kept candidates: strict > is exactly the Better order.
  auto offer = [&](size_t i) {
    buf.push_back({static_cast<int>(i), logits[i]});
    if (buf.size() == cap) cut_to_k();
  };
  // Test a block of lanes at once (branch-free and vectorizable) and only walk blocks that hold
  // a contender: once the bar has risen, that is almost none of them.
  constexpr size_t kLanes = 16;
  const size_t n = logits.size();
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    int hits = 0;  // an int sum of comparisons vectorizes; a bool OR does not
    for (size_t j = 0; j < kLanes; ++j) hits += logits[i + j] > bar;
    if (hits == 0) continue;
    for (size_t j = 0; j < kLanes; ++j) {
      if (logits[i + j] > bar) offer(i + j);  // -inf bar also rejects NaN and -inf logits
    }
  }
  for (; i < n; ++i) {
    if (logits[i] > bar) offer(i);
  }
  if (buf.size() > kk) cut_to_k();
  std::sort(buf.begin(), buf.end(), Better);
  out.sorted = true;
  if (!buf.empty() && buf.front().logit == kInf) {
    // Same +inf rule as InitCandidates; the +inf tokens are a sorted prefix, so the lowest ids
    // among them were kept, as TopK after InitCandidates would.
    std::erase_if(buf, [](const Candidate& c) { return c.logit != kInf; });
    for (Candidate& c : buf) c.logit = 0.0f;
  }
}

void TopK(Candidates& c, int k) {
  if (k <= 0 || static_cast<size_t>(k) >= c.data.size()) return;
  const auto kth = c.data.begin() + k;
  if (!c.sorted) {
    std::nth_element(c.data.begin(), kth, c.data.end(), Better);
    std::sort(c.data.begin(), kth, Better);
    c.sorted = true;
  }
  c.data.erase(kth, c.data.end());
}

void TopP(Candidates& c, float p) {
  if (p >= 1.0f || c.data.empty()) return;
  const float max_logit = MaxLogit(c);
  const auto begin = c.data.begin();
  const auto end = c.data.end();

  // prob temporarily holds the unnormalized weight exp(logit - max); Softmax overwrites it later.
  // Single-precision exp (much cheaper than double over 32000 tokens), double accumulation.
  //
  // An unsorted list is not sorted in full (2 ms at V = 32000): the weights are also binned by
  // distance below the max logit into kBuckets buckets of 1/32 nat. Walking the buckets from the
  // top finds the one where the cumulative mass reaches p; only candidates in it or above can be
  // in the nucleus, so only those are moved to the front and sorted.
  constexpr int kBuckets = 1024;
  constexpr float kBucketsPerNat = 32.0f;  // covers [0, 32) nats; the last bucket takes the rest
  auto bucket_of = [&](float logit) {
    const float d = (max_logit - logit) * kBucketsPerNat;  // monotone in logit: a valid pre-filter
    return d < static_cast<float>(kBuckets - 1) ? static_cast<int>(d) : kBuckets - 1;
  };
  std::vector<double> mass(c.sorted ? 0 : kBuckets, 0.0);
  double total = 0.0;
  for (Candidate& x : c.data) {
    x.prob = std::exp(x.logit - max_logit);
    total += x.prob;
    if (!c.sorted) mass[static_cast<size_t>(bucket_of(x.logit))] += x.prob;
  }
  const double target = static_cast<double>(p) * total - kThresholdSlack * total;

  auto sorted_end = end;
  if (!c.sorted) {
    int cut = kBuckets - 1;
    double cum = 0.0;
    for (int b = 0; b < kBuckets; ++b) {
      cum += mass[static_cast<size_t>(b)];
      if (cum >= target) {
        cut = b;
        break;
      }
    }
    sorted_end =
        std::partition(begin, end, [&](const Candidate& x) { return bucket_of(x.logit) <= cut; });
    std::sort(begin, sorted_end, Better);
  }

  double cum = 0.0;
  auto it = begin;
  while (it != end) {
    if (it == sorted_end) {
      // The bucket sums and this walk add in different orders, so rounding can leave the target
      // a hair out of reach of the pre-filtered prefix; then sort the rest and keep walking.
      std::sort(sorted_end, end, Better);
      sorted_end = end;
    }
    cum += it->prob;
    ++it;
    if (cum >= target) break;
  }
  c.data.erase(it, end);
  c.sorted = true;
}

void MinP(Candidates& c, float min_p) {
  if (min_p <= 0.0f || c.data.empty()) return;
  // p_i >= min_p * p_max  <=>  logit_i - max_logit >= log(min_p): no exponentials needed.
  const double max_logit = MaxLogit(c);
  const double threshold = std::log(static_cast<double>(min_p)) - kThresholdSlack;
  // erase_if is stable, so a sorted list stays sorted.
  std::erase_if(c.data, [&](const Candidate& x) {
    return static_cast<double>(x.logit) - max_logit < threshold;
  });
}

void ApplyTemperature(Candidates& c, float t) {
  if (c.data.empty()) return;
  if (t <= 0.0f) {
    const Candidate best =
        c.sorted ? c.data.front() : *std::min_element(c.data.begin(), c.data.end(), Better);
    c.data.assign(1, best);
    c.sorted = true;
    return;
  }
  const float max_logit = MaxLogit(c);
  for (Candidate& x : c.data) x.logit = (x.logit - max_logit) / t;
}

void Softmax(Candidates& c) {
  if (c.data.empty()) return;
  const float max_logit = MaxLogit(c);
  if (max_logit == kInf) {
    // Same limit as in InitCandidates: uniform over the +inf entries.
    for (Candidate& x : c.data) x.prob = x.logit == kInf ? 1.0f : 0.0f;
  } else {
    for (Candidate& x : c.data) x.prob = std::exp(x.logit - max_logit);
  }
  double total = 0.0;
  for (const Candidate& x : c.data) total += x.prob;
  const float inv = static_cast<float>(1.0 / total);
  for (Candidate& x : c.data) x.prob *= inv;
}

namespace {

// Shared by both SampleFromDistribution overloads. prob(i) returns the weight of entry i.
template <typename ProbFn>
size_t DrawIndex(size_t n, ProbFn prob, Rng& rng) {
  auto weight = [&](size_t i) {
    const double w = prob(i);
    return w > 0.0 ? w : 0.0;  // also maps NaN to 0
  };
  double total = 0.0;
  for (size_t i = 0; i < n; ++i) total += weight(i);
  if (!(total > 0.0) || !std::isfinite(total)) {
    Fail("SampleFromDistribution: no positive, finite probability among ", n, " entries");
  }
  const double u = rng.NextDouble() * total;
  double cum = 0.0;
  size_t last_positive = 0;
  for (size_t i = 0; i < n; ++i) {
    const double w = weight(i);
    if (w == 0.0) continue;
    cum += w;
    last_positive = i;
    if (u < cum) return i;
  }
  // Rounding can leave u a hair above the running sum; the last possible entry takes it.
  return last_positive;
}

}  // namespace

int SampleFromDistribution(const Candidates& c, Rng& rng) {
  const size_t i = DrawIndex(
      c.data.size(), [&](size_t j) { return c.data[j].prob; }, rng);
  return c.data[i].id;
}

int SampleFromDistribution(std::span<const float> probs, Rng& rng) {
  return static_cast<int>(DrawIndex(
      probs.size(), [&](size_t j) { return probs[j]; }, rng));
}

Sampler::Sampler(const SamplingParams& p) : params_(p), rng_(p.seed) {
  ValidateSamplingParams(p);
}

int Sampler::Sample(std::span<float> logits, std::span<const int> history) {
  if (logits.empty()) Fail("Sampler::Sample: empty logits (vocabulary size 0)");
  const SamplingParams& p = params_;
  ApplyRepetitionPenalty(logits, history, p.repetition_penalty, p.repetition_window);
  ApplyPresenceFrequencyPenalty(logits, history, p.presence_penalty, p.frequency_penalty,
                                p.repetition_window);
  if (p.temperature == 0.0f) return Greedy(logits);

  Candidates& c = candidates_;
  InitTopKCandidates(logits, p.top_k, c);  // = InitCandidates + TopK, in one cheap pass
  if (c.data.empty()) return 0;  // every token impossible: documented deterministic fallback
  TopP(c, p.top_p);
  MinP(c, p.min_p);
  ApplyTemperature(c, p.temperature);
  Softmax(c);
  return SampleFromDistribution(c, rng_);
}

}  // namespace elm
