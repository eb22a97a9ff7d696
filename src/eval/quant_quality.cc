#include "eval/quant_quality.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "base/error.h"
#include "kernels/log_softmax.h"
#include "model/session.h"

namespace elm {
namespace {
// log-softmax of one row, in double.
void LogSoftmax(const float* x, int n, std::vector<double>& out) {
  const RowLogSoftmax lsm(std::span<const float>(x, static_cast<size_t>(n)));
  out.resize(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) out[static_cast<size_t>(i)] = lsm.LogProb(x[i]);
}
}  // namespace

QuantQuality CompareModels(const std::shared_ptr<const Model>& base,
                           const std::shared_ptr<const Model>& converted,
                           std::span<const int> tokens, int context) {
  const int V = base->config().vocab_size;
  if (converted->config().vocab_size != V) Fail("compare: the models' vocabularies differ");
  if (tokens.size() < 2) Fail("compare: need at least 2 tokens");
  context = std::min(context, base->config().max_context);
  QuantQuality q;
  double nll_base = 0, nll_conv = 0;
  int agree = 0;
  std::vector<float> la, lb;
  std::vector<double> pa, pb;
  ForwardOptions opt;
  opt.all_logits = true;
  for (size_t start = 0; start + 1 < tokens.size(); start += static_cast<size_t>(context)) {
    const size_t n = std::min(static_cast<size_t>(context), tokens.size() - start);
    if (n < 2) break;
    const auto window = tokens.subspan(start, n);
    Session sa(base, static_cast<int>(n)), sb(converted, static_cast<int>(n));
    sa.Forward(window, la, opt);
    sb.Forward(window, lb, opt);
    for (size_t t = 0; t + 1 < n; ++t) {
      LogSoftmax(la.data() + t * V, V, pa);
      LogSoftmax(lb.data() + t * V, V, pb);
      double kl = 0;
      for (int i = 0; i < V; ++i) kl += std::exp(pa[i]) * (pa[i] - pb[i]);
      q.mean_kl += kl;
      q.max_kl = std::max(q.max_kl, kl);
      const int next = window[t + 1];
      nll_base -= pa[static_cast<size_t>(next)];
      nll_conv -= pb[static_cast<size_t>(next)];
      const auto* ra = la.data() + t * V;
      const auto* rb = lb.data() + t * V;
      for (int i = 0; i < V; ++i) {
        q.max_abs_diff = std::max(q.max_abs_diff, static_cast<double>(std::fabs(ra[i] - rb[i])));
        q.max_abs_logit = std::max(q.max_abs_logit, static_cast<double>(std::fabs(ra[i])));
      }
      agree += (std::max_element(ra, ra + V) - ra) == (std::max_element(rb, rb + V) - rb);
      ++q.tokens;
    }
  }
  q.mean_kl /= q.tokens;
  q.top1_agreement = static_cast<double>(agree) / q.tokens;
  q.base_ppl = std::exp(nll_base / q.tokens);
  q.converted_ppl = std::exp(nll_conv / q.tokens);
  return q;
}

}  // namespace elm
