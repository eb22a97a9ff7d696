// OpenELM tensor names in the layouts elm reads and writes (table in docs/formats.md):
//   HF (Apple's checkpoints) and MLX (mlx-lm's openelm model uses the same module names):
//     transformer.token_embeddings.weight, transformer.layers.{i}.attn.qkv_proj.weight, ...
//   GGUF (llama.cpp's OpenELM support):
//     token_embd.weight, blk.{i}.attn_qkv.weight, ...
// The one structural difference: HF's fused ffn.proj_1 ([2F, D], gate rows first) is two GGUF
// tensors, ffn_gate (rows [0, F)) and ffn_up (rows [F, 2F)).
#pragma once

#include <string>
#include <vector>

namespace elm {

// Which rows of an HF tensor a GGUF tensor holds.
enum class RowPart { kAll, kFirstHalf, kSecondHalf };

struct GgufNamePart {
  std::string gguf;
  RowPart part = RowPart::kAll;
};

// GGUF name(s) of an HF tensor: one entry, or for proj_1 with GLU the gate then the up half.
// Empty for names outside the OpenELM layout.
std::vector<GgufNamePart> HfToGguf(const std::string& hf_name, bool ffn_with_glu);

}  // namespace elm
