#include "config/tensor_layout.h"

namespace elm {

std::vector<TensorSpec> ExpectedTensors(const ModelConfig& c) {
  using R = TensorRole;
  const int64_t d = c.dim, hd = c.head_dim, V = c.vocab_size;
  std::vector<TensorSpec> t;
  t.push_back({"transformer.token_embeddings.weight", {V, d}, -1, R::kEmbeddings});
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string p = "transformer.layers." + std::to_string(i) + ".";
    const int64_t nq = c.layers[i].n_heads, f = c.layers[i].ffn_dim;
    t.push_back({p + "attn_norm.weight", {d}, i, R::kAttnNorm});
    t.push_back({p + "attn.qkv_proj.weight", {c.qkv_out(i), d}, i, R::kQkv});
    if (c.qk_norm) {
      t.push_back({p + "attn.q_norm.weight", {hd}, i, R::kQNorm});
      t.push_back({p + "attn.k_norm.weight", {hd}, i, R::kKNorm});
    }
    t.push_back({p + "attn.out_proj.weight", {d, nq * hd}, i, R::kOut});
    t.push_back({p + "ffn_norm.weight", {d}, i, R::kFfnNorm});
    t.push_back({p + "ffn.proj_1.weight", {c.proj1_out(i), d}, i, R::kProj1});
    t.push_back({p + "ffn.proj_2.weight", {d, f}, i, R::kProj2});
  }
  t.push_back({"transformer.norm.weight", {d}, -1, R::kFinalNorm});
  if (!c.tied_embeddings) t.push_back({"lm_head.weight", {V, d}, -1, R::kLmHead});
  return t;
}

}  // namespace elm
