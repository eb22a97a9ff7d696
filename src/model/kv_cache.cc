#include "model/kv_cache.h"

#include "base/error.h"

namespace elm {

KVCache::KVCache(const ModelConfig& cfg, int capacity)
    : capacity_(capacity), head_dim_(cfg.head_dim) {
  if (capacity <= 0) Fail("KV cache capacity must be positive, got ", capacity);
  k_.resize(cfg.n_layers);
  v_.resize(cfg.n_layers);
  for (int l = 0; l < cfg.n_layers; ++l) {
    const size_t n = static_cast<size_t>(cfg.layers[l].n_kv_heads) * capacity * cfg.head_dim;
    k_[l].assign(n, 0.0f);
    v_[l].assign(n, 0.0f);
  }
}

void KVCache::Truncate(int n) {
  if (n < 0 || n > size_) Fail("KV cache: cannot truncate to ", n, " (holds ", size_, ")");
  size_ = n;
}

void KVCache::Advance(int n) {
  ELM_CHECK(n >= 0 && size_ + n <= capacity_);
  size_ += n;
}

size_t KVCache::bytes() const {
  size_t b = 0;
  for (size_t l = 0; l < k_.size(); ++l) b += (k_[l].size() + v_[l].size()) * sizeof(float);
  return b;
}

}  // namespace elm
