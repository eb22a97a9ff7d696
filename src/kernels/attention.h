// Causal grouped-query attention over a KV cache (spec §1.5–1.6). Query head h reads KV head
// h / (H / Hkv). The mask is bottom-right aligned: query t of a chunk that starts at position
// `past` sees keys [0, past + t].
#pragma once

#include "model/kv_cache.h"

namespace elm {

// q:   [T, H, Dh] queries after QK-norm and RoPE.
// out: [T, H, Dh] attention output (head-major concat, ready for out_proj).
// Keys/values for positions [0, past + T) must already be in the cache for `layer`.
void CausalAttention(float* out, const float* q, int T, int past, int layer, int n_heads,
                     int n_kv_heads, int head_dim, const KVCache& cache);

}  // namespace elm
