// One layer of a key/value cache as the attention kernels read it. The cache itself
// (model/kv_cache.h) owns the memory and hands out these views, so the kernels know nothing of
// models or caches: per KV head, `capacity` rows of `head_dim` values in `dtype` (f32, bf16, f16),
// keys and values in separate blocks.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/dtype.h"

namespace elm {

struct KvLayerView {
  const uint8_t* k = nullptr;  // [Hkv, capacity, head_dim]
  const uint8_t* v = nullptr;  // [Hkv, capacity, head_dim]
  DType dtype = DType::kF32;
  int capacity = 0;
  int head_dim = 0;
  size_t elem = 4;  // bytes per element of dtype

  // Row `pos` of a KV head in the cache's type; rows of a head are contiguous (stride head_dim).
  const void* KRow(int kv_head, int pos) const { return Row(k, kv_head, pos); }
  const void* VRow(int kv_head, int pos) const { return Row(v, kv_head, pos); }
  // Row `pos` widened to f32 into `out` (head_dim floats).
  void LoadK(int kv_head, int pos, float* out) const {
    ToF32(dtype, KRow(kv_head, pos), out, head_dim);
  }
  void LoadV(int kv_head, int pos, float* out) const {
    ToF32(dtype, VRow(kv_head, pos), out, head_dim);
  }

 private:
  const void* Row(const uint8_t* base, int kv_head, int pos) const {
    return base + (static_cast<size_t>(kv_head) * capacity + pos) * head_dim * elem;
  }
};

}  // namespace elm
