#include "model/kv_cache.h"

#include <unistd.h>

#include <algorithm>
#include <new>

#include "base/error.h"

namespace elm {

KVCache::KVCache(const ModelConfig& cfg, int capacity, DType type)
    : capacity_(capacity), head_dim_(cfg.head_dim), type_(type), elem_(DTypeSize(type)) {
  if (capacity <= 0) Fail("KV cache capacity must be positive, got ", capacity);
  if (type != DType::kF32 && type != DType::kBF16 && type != DType::kF16)
    Fail("KV cache type ", DTypeName(type), " is not supported (f32, bf16 or f16)");
  // The size first, in double (no overflow), against the machine's memory: a huge context
  // (--context 2147483647) is an error saying so, not std::bad_alloc.
  double total = 0;
  for (int l = 0; l < cfg.n_layers; ++l)
    total += 2.0 * cfg.layers[l].n_kv_heads * capacity * cfg.head_dim * static_cast<double>(elem_);
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  const double memory = pages > 0 && page > 0 ? static_cast<double>(pages) * page : 0;
  constexpr double kGiB = 1024.0 * 1024 * 1024;
  if (memory > 0 && total > memory)
    Fail("a KV cache for a context of ", capacity, " tokens needs ", total / kGiB,
         " GiB, more than this machine's ", memory / kGiB, " GiB of memory; lower --context");
  k_.resize(cfg.n_layers);
  v_.resize(cfg.n_layers);
  try {
    for (int l = 0; l < cfg.n_layers; ++l) {
      const size_t n = static_cast<size_t>(cfg.layers[l].n_kv_heads) * capacity * cfg.head_dim;
      k_[l].assign(n * elem_, 0);
      v_[l].assign(n * elem_, 0);
    }
  } catch (const std::bad_alloc&) {
    Fail("cannot allocate a KV cache of ", total / kGiB, " GiB for a context of ", capacity,
         " tokens; lower --context");
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

void KVCache::Store(int layer, int kv_head, int pos, const float* k, const float* v) {
  const size_t at = (static_cast<size_t>(kv_head) * capacity_ + pos) * head_dim_ * elem_;
  FromF32(type_, k, k_[layer].data() + at, head_dim_);
  FromF32(type_, v, v_[layer].data() + at, head_dim_);
}

size_t KVCache::PrefixBytes(int n) const {
  // Every layer's k and v blocks hold capacity positions of each head.
  return bytes() / static_cast<size_t>(capacity_) * static_cast<size_t>(n);
}

void KVCache::SavePrefix(int n, std::vector<uint8_t>& out) const {
  if (n < 0 || n > size_) Fail("KV cache: cannot save ", n, " positions (holds ", size_, ")");
  const size_t row = static_cast<size_t>(head_dim_) * elem_;
  const size_t head = static_cast<size_t>(capacity_) * row;
  out.reserve(out.size() + PrefixBytes(n));
  for (size_t l = 0; l < k_.size(); ++l)
    for (const auto* block : {&k_[l], &v_[l]})
      for (size_t at = 0; at < block->size(); at += head)
        out.insert(out.end(), block->begin() + static_cast<ptrdiff_t>(at),
                   block->begin() + static_cast<ptrdiff_t>(at + n * row));
}

void KVCache::LoadPrefix(std::span<const uint8_t> in, int stored, int n) {
  if (n < 0 || n > stored || n > capacity_ || in.size() != PrefixBytes(stored))
    Fail("KV cache: cannot load ", n, " of ", stored, " positions from ", in.size(),
         " bytes into a cache of ", capacity_);
  const size_t row = static_cast<size_t>(head_dim_) * elem_;
  const size_t head = static_cast<size_t>(capacity_) * row;
  size_t from = 0;
  for (size_t l = 0; l < k_.size(); ++l)
    for (auto* block : {&k_[l], &v_[l]})
      for (size_t at = 0; at < block->size(); at += head) {
        std::copy(in.begin() + static_cast<ptrdiff_t>(from),
                  in.begin() + static_cast<ptrdiff_t>(from + n * row),
                  block->begin() + static_cast<ptrdiff_t>(at));
        from += stored * row;
      }
  size_ = n;
}

size_t KVCache::bytes() const {
  size_t b = 0;
  for (size_t l = 0; l < k_.size(); ++l) b += k_[l].size() + v_[l].size();
  return b;
}

}  // namespace elm
