#include "generation/embedding.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"

namespace elm {

Pooling ParsePooling(const std::string& name, const std::string& field) {
  if (name == "mean") return Pooling::kMean;
  if (name == "last") return Pooling::kLast;
  Fail(field, " must be \"mean\" or \"last\", got \"", name, "\"");
}

const char* PoolingName(Pooling p) {
  return p == Pooling::kMean ? "mean" : "last";
}

std::vector<float> Embed(Session& session, std::span<const int> tokens, const EmbedOptions& opt) {
  if (tokens.empty()) Fail("embedding: empty input (no tokens)");
  if (static_cast<int>(tokens.size()) > session.context())
    Fail("embedding: the input has ", tokens.size(), " tokens, more than the context of ",
         session.context());
  const auto& c = session.model().config();
  const size_t D = static_cast<size_t>(c.dim);
  session.Reset();
  std::vector<double> sum(D, 0.0);
  std::vector<float> logits, hidden, last(D);
  ForwardOptions fo;
  fo.hidden_states = &hidden;
  for (size_t s = 0; s < tokens.size(); s += Session::kMaxBatch) {
    const size_t n = std::min<size_t>(Session::kMaxBatch, tokens.size() - s);
    session.Forward(tokens.subspan(s, n), logits, fo);
    // The last of the L + 1 entries, [n, D]: the final norm of the last layer's output.
    const float* final = hidden.data() + static_cast<size_t>(c.n_layers) * n * D;
    for (size_t t = 0; t < n; ++t)
      for (size_t i = 0; i < D; ++i) sum[i] += final[t * D + i];
    std::copy(final + (n - 1) * D, final + n * D, last.begin());
  }
  session.Reset();
  std::vector<float> out(D);
  if (opt.pooling == Pooling::kLast) {
    out = last;
  } else {
    for (size_t i = 0; i < D; ++i) out[i] = static_cast<float>(sum[i] / double(tokens.size()));
  }
  if (opt.normalize) {
    double norm = 0;
    for (float v : out) norm += double(v) * v;
    norm = std::sqrt(norm);
    if (norm > 0)
      for (float& v : out) v = static_cast<float>(v / norm);
  }
  return out;
}

}  // namespace elm
