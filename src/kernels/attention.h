// Causal grouped-query attention over a KV cache (docs/openelm.md §1.5–1.6). Query head h reads KV
// head h / (H / Hkv). The mask is bottom-right aligned: query t of a chunk that starts at position
// `past` sees keys [0, past + t].
#pragma once

#include "kernels/kv_view.h"

namespace elm {

// q:   [T, H, Dh] queries after QK-norm and RoPE.
// out: [T, H, Dh] attention output (head-major concat, ready for out_proj).
// Keys/values for positions [0, past + T) must already be in `kv` (one layer of a KV cache).
void CausalAttention(float* out, const float* q, int T, int past, int n_heads, int n_kv_heads,
                     int head_dim, const KvLayerView& kv);

// ---- Training attention over a batch [B, T], every row at positions 0..T-1. ----
// Inputs are read in place from the fused projection rows: qkv is [B, T, (H + 2 Hkv) Dh] with
// heads [0, H) queries, [H, H + Hkv) keys, then values (docs/openelm.md §1.4), queries and keys
// already QK-normed and rotated. Only the per-row logsumexp is saved; the backward pass recomputes
// the probabilities (flash-attention style), so memory stays O(B·H·T) rather than O(B·H·T²). Each
// (row, head) is a handful of BLAS GEMMs over a [T, T] scratch block.

// out: [B, T, H, Dh]; lse: [B, H, T] logsumexp of each query's scaled scores.
void AttentionForward(float* out, float* lse, const float* qkv, int B, int T, int n_heads,
                      int n_kv_heads, int head_dim);
// Accumulates into dqkv [B, T, (H + 2 Hkv) Dh] (query, key and value slots) from dout
// [B, T, H, Dh]; out and lse are AttentionForward's results for the same qkv.
void AttentionBackward(float* dqkv, const float* dout, const float* out, const float* lse,
                       const float* qkv, int B, int T, int n_heads, int n_kv_heads, int head_dim);

// Same contract; groups the query heads of each KV head so cached rows are read once
// (attention_fast.cc). Differs from the reference by summation order only.
void CausalAttentionFast(float* out, const float* q, int T, int past, int n_heads, int n_kv_heads,
                         int head_dim, const KvLayerView& kv);

}  // namespace elm
