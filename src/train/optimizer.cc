#include "train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "base/error.h"

namespace elm {

float TorchVectorNorm(const float* x, size_t n) {
  constexpr size_t kLanes = 8;
  float acc[kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t d = 0;
  for (; d + kLanes <= n; d += kLanes)
    for (size_t j = 0; j < kLanes; ++j) {
      const float sq = x[d + j] * x[d + j];
      acc[j] = acc[j] + sq;
    }
  float sum = acc[0];
  for (size_t j = 1; j < kLanes; ++j) sum = sum + acc[j];
  for (; d < n; ++d) {
    const float sq = x[d] * x[d];
    sum = sum + sq;
  }
  return std::sqrt(sum);
}

namespace {
// Position of a tensor in OpenELMForCausalLM.named_parameters(): modules register in the order
// embeddings, per layer attn (qkv_proj, q_norm, k_norm, out_proj), ffn (proj_1, proj_2),
// ffn_norm, attn_norm; then the final norm and an untied lm_head.
int TorchRank(const ParamTensor& t) {
  static const char* const kLayerOrder[] = {".attn.qkv_proj.weight", ".attn.q_norm.weight",
                                            ".attn.k_norm.weight",   ".attn.out_proj.weight",
                                            ".ffn.proj_1.weight",    ".ffn.proj_2.weight",
                                            ".ffn_norm.weight",      ".attn_norm.weight"};
  const std::string& n = t.spec.name;
  if (t.spec.layer < 0)
    return n == "transformer.token_embeddings.weight" ? -1
           : n == "lm_head.weight"                    ? 1 << 30
                                                      : (1 << 30) - 1;
  for (int k = 0; k < 8; ++k) {
    const std::string s(kLayerOrder[k]);
    if (n.size() >= s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0)
      return t.spec.layer * 8 + k;
  }
  return t.spec.layer * 8 + 7;
}
}  // namespace

double GlobalGradNorm(const ParamSet& ps) {
  std::vector<const ParamTensor*> order;
  for (const auto& t : ps.tensors()) order.push_back(&t);
  std::stable_sort(order.begin(), order.end(), [](const ParamTensor* a, const ParamTensor* b) {
    return TorchRank(*a) < TorchRank(*b);
  });
  std::vector<float> norms;
  for (const ParamTensor* t : order)
    norms.push_back(TorchVectorNorm(ps.grads.data() + t->offset, t->numel));
  return TorchVectorNorm(norms.data(), norms.size());
}

double ClipGradients(ParamSet& ps, double norm, double max_norm) {
  return ClipGradients(ps.grads, norm, max_norm);
}

double ClipGradients(std::vector<float>& grads, double norm, double max_norm) {
  // f32 tensor arithmetic, as clip_grad_norm_ does it.
  const float coef = static_cast<float>(max_norm) / (static_cast<float>(norm) + 1e-6f);
  if (!(coef < 1.0f)) return 1.0;
  for (float& g : grads) g *= coef;
  return coef;
}

void AdamWUpdate(ParamSet& ps, const AdamWParams& hp, double lr, int64_t step) {
  ELM_CHECK(step >= 1 && ps.m.size() == ps.size());
  const AdamWStep s(hp, lr, step);
  // One parallel region for the whole update: tensors are independent, so no barrier between
  // them (nowait); small models would otherwise pay a fork/join per tensor.
  const auto total = static_cast<int64_t>(ps.size());
#pragma omp parallel if (total >= (1 << 16))
  for (const ParamTensor& t : ps.tensors()) {
    float* p = ps.params.data() + t.offset;
    const float* g = ps.grads.data() + t.offset;
    float* m = ps.m.data() + t.offset;
    float* v = ps.v.data() + t.offset;
    const bool wd = t.decay && hp.weight_decay != 0.0;
    const auto n = static_cast<int64_t>(t.numel);
#pragma omp for schedule(static) nowait
    for (int64_t i = 0; i < n; ++i) s.Update(p[i], g[i], m[i], v[i], wd);
  }
}

AdamWStep::AdamWStep(const AdamWParams& hp, double lr, int64_t step)
    : b1(static_cast<float>(hp.beta1)),
      b2(static_cast<float>(hp.beta2)),
      omb1(static_cast<float>(1.0 - hp.beta1)),
      omb2(static_cast<float>(1.0 - hp.beta2)),
      step_size(static_cast<float>(lr / (1.0 - std::pow(hp.beta1, static_cast<double>(step))))),
      bc2_sqrt(static_cast<float>(std::sqrt(1.0 - std::pow(hp.beta2, static_cast<double>(step))))),
      eps(static_cast<float>(hp.eps)),
      decay(static_cast<float>(1.0 - lr * hp.weight_decay)) {}

double LrSchedule::At(int64_t it) const {
  double lr;
  if (warmup_iterations > 0 && it < warmup_iterations) {
    lr = warmup_init_lr + static_cast<double>(it) * (max_lr - warmup_init_lr) /
                              static_cast<double>(warmup_iterations);
  } else if (name == "fixed") {
    lr = max_lr;
  } else {
    const double t = static_cast<double>(it - warmup_iterations);
    const double period = static_cast<double>(max_iterations - warmup_iterations + 1);
    lr = min_lr + 0.5 * (max_lr - min_lr) * (1.0 + std::cos(std::numbers::pi * t / period));
  }
  return std::max(0.0, lr);
}

}  // namespace elm
