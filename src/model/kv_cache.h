// Per-layer key/value cache. Layers have different KV-head counts (layer-wise scaling), so each
// layer owns its own [Hkv, capacity, Dh] blocks. Keys are stored after QK-norm and RoPE.
#pragma once

#include <vector>

#include "config/model_config.h"

namespace elm {

class KVCache {
 public:
  // capacity: the most positions this cache can hold (≤ what the caller allows as context).
  KVCache(const ModelConfig& cfg, int capacity);

  int size() const { return size_; }  // positions filled
  int capacity() const { return capacity_; }
  void Clear() { size_ = 0; }
  // Drops positions [n, size): e.g. to rewind a chat turn or reuse a shared prefix.
  void Truncate(int n);
  // Marks n more positions as filled (after the forward pass wrote them).
  void Advance(int n);

  float* K(int layer, int kv_head, int pos) { return Ptr(k_[layer], kv_head, pos); }
  float* V(int layer, int kv_head, int pos) { return Ptr(v_[layer], kv_head, pos); }
  const float* K(int layer, int kv_head, int pos) const {
    return const_cast<KVCache*>(this)->K(layer, kv_head, pos);
  }
  const float* V(int layer, int kv_head, int pos) const {
    return const_cast<KVCache*>(this)->V(layer, kv_head, pos);
  }
  size_t bytes() const;

 private:
  float* Ptr(std::vector<float>& buf, int kv_head, int pos) {
    return buf.data() + (static_cast<size_t>(kv_head) * capacity_ + pos) * head_dim_;
  }
  int capacity_;
  int head_dim_;
  int size_ = 0;
  std::vector<std::vector<float>> k_, v_;  // per layer [Hkv, capacity, Dh]
};

}  // namespace elm
