// Per-layer key/value cache. Layers have different KV-head counts (layer-wise scaling), so each
// layer owns its own [Hkv, capacity, Dh] blocks. Keys are stored after QK-norm and RoPE, in f32
// (default) or rounded to bf16 or f16 (half the memory and half the bytes read per generated
// token; docs/numerics.md).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/dtype.h"
#include "config/model_config.h"
#include "kernels/kv_view.h"

namespace elm {

class KVCache {
 public:
  // capacity: the most positions this cache can hold (≤ what the caller allows as context).
  // type: kF32, kBF16 or kF16 (anything else is an error).
  KVCache(const ModelConfig& cfg, int capacity, DType type = DType::kF32);

  int size() const { return size_; }  // positions filled
  int capacity() const { return capacity_; }
  DType dtype() const { return type_; }
  void Clear() { size_ = 0; }
  // Drops positions [n, size): e.g. to rewind a chat turn or reuse a shared prefix.
  void Truncate(int n);
  // Marks n more positions as filled (after the forward pass wrote them).
  void Advance(int n);

  // Writes position `pos` of one KV head: Dh floats each, rounded to the cache's type.
  void Store(int layer, int kv_head, int pos, const float* k, const float* v);
  // Layer `layer` as the attention kernels read it (valid while the cache lives).
  KvLayerView Layer(int layer) const {
    return {k_[layer].data(), v_[layer].data(), type_, capacity_, head_dim_, elem_};
  }
  size_t bytes() const;

  // A copy of positions [0, n) (a server's prefix store, docs/server.md "Prefix store"): the bytes
  // they take, and every layer's keys then values, head by head, appended to `out`.
  size_t PrefixBytes(int n) const;
  void SavePrefix(int n, std::vector<uint8_t>& out) const;
  // Makes the cache hold the first n positions of such a copy of `stored` positions, written by a
  // cache of the same model and type (n <= stored, n <= capacity; checked).
  void LoadPrefix(std::span<const uint8_t> in, int stored, int n);

 private:
  int capacity_;
  int head_dim_;
  DType type_;
  size_t elem_;  // bytes per element
  int size_ = 0;
  std::vector<std::vector<uint8_t>> k_, v_;  // per layer [Hkv, capacity, Dh]
};

}  // namespace elm
