// An OpenELM model ready for inference: config, the checkpoint's tensors (mmapped, in their
// stored dtype) and small f32 copies of the norm weights. Read-only after loading, so one Model
// can serve many sessions (each with its own KVCache).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/model_config.h"
#include "config/tensor_layout.h"
#include "io/model_source.h"
#include "io/safetensors.h"
#include "kernels/matmul.h"

namespace elm {

struct LayerWeights {
  std::vector<float> attn_norm;  // [D]
  std::vector<float> q_norm;     // [Dh] (empty without QK-norm)
  std::vector<float> k_norm;     // [Dh]
  std::vector<float> ffn_norm;   // [D]
  MatRef qkv;                    // [(H + 2 Hkv) Dh, D]
  MatRef out;                    // [D, H Dh]
  // proj_1 [2F, D] is stored fused (rows [0, F) gate, [F, 2F) up); GGUF stores the halves
  // apart, so the forward pass sees them as two matrices. Without GLU only `up` is set ([F, D]).
  MatRef gate;  // [F, D]
  MatRef up;    // [F, D]
  MatRef down;  // [D, F] proj_2
};

struct LoadOptions {
  // Convert every weight matrix to this type at load (e.g. Q8_0, Q4_0, BF16); unset keeps the
  // stored types, mmapped. Norm weights always stay f32.
  std::optional<DType> weights;
  // Interleave Q8_0/Q4_0 rows for the SIMD kernels (same bytes; see MatRef::packed).
  bool pack = true;
  // Unquantized matrices kept in their stored type are used in place from the mmapped file.
  // false copies them into huge-page memory instead, dropping the file's pages as each matrix
  // is copied (resident memory stays one copy): decoding reads anonymous memory, which is
  // faster on some machines (docs/performance.md), at the cost of a copy at load and of page
  // cache sharing between processes. llama.cpp's --no-mmap.
  bool mmap = true;
  // A LoRA adapter folder (model/lora_adapter.h) merged into the weights at load: each targeted
  // matrix is widened to f32, W += s·B·A is added, and the result is stored in `weights` (or the
  // stored type when unset). HF and MLX folders only. A tied output head keeps the base
  // embedding.
  std::string lora;
  // Sessions on this model compute every matrix product in f32 on weights widened exactly, with
  // the SIMD kernels (--exact; MatMulFast's `exact`, docs/numerics.md). Off: the fast path.
  bool exact = false;
};

// `src` converted to `to` (rows in parallel) into a new huge-page buffer appended to `owned`;
// Q8_0/Q4_0 results come out packed for the kernels when `pack` and the shape allow. Throws
// elm::Error naming `origin` and tensor `name` when the columns do not fill whole blocks of `to`.
MatRef ConvertMatrix(const MatRef& src, DType to, std::vector<std::shared_ptr<uint8_t>>& owned,
                     const std::string& origin, const std::string& name, bool pack = false);

class Model {
 public:
  // `path`: a folder with config.json and model.safetensors (or a sharded index) in HF or
  // mlx-lm layout (MLX-quantized matrices are dequantized to f32), or a .gguf file: whatever
  // OpenModelSource opens.
  static std::shared_ptr<const Model> Load(const std::string& path, const LoadOptions& opt = {});

  // A model with random weights (N(0, 0.02²) matrices, unit norms) held in memory, stored as
  // `type`: for benchmarks and tests, where values do not matter.
  static std::shared_ptr<const Model> Random(const ModelConfig& cfg, DType type, uint64_t seed,
                                             const LoadOptions& opt = {});

  const ModelConfig& config() const { return config_; }
  // LoadOptions::exact: what sessions on this model compute with by default.
  bool exact() const { return exact_; }
  const std::string& path() const { return path_; }
  const MatRef& embeddings() const { return embeddings_; }  // [V, D]
  const MatRef& lm_head() const { return lm_head_; }        // [V, D] (= embeddings when tied)
  const std::vector<float>& final_norm() const { return final_norm_; }
  const LayerWeights& layer(int i) const { return layers_[i]; }
  // The tensors of the HF or MLX folder it was loaded from, as stored (throws for other models).
  const TensorStore& store() const;
  // Type of the big matrices as used for compute ("F32", "BF16", "Q8_0", ... or "mixed").
  std::string weights_dtype() const;
  size_t weights_bytes() const;  // bytes of all weight matrices and norms as held in memory
  // Visits every tensor of the checkpoint layout as the source stores it (shape and type; the
  // data of converted tensors may have been released).
  void ForEachTensor(const std::function<void(const SourceTensor&)>& fn) const;

 private:
  ModelConfig config_;
  std::string path_;
  bool exact_ = false;
  std::shared_ptr<const ModelSource> source_;  // what the matrices kept mapped point into
  MatRef embeddings_, lm_head_;
  std::vector<float> final_norm_;
  std::vector<LayerWeights> layers_;

  // Where a tensor of the layout goes: a matrix, a matrix whose row halves are two (proj_1 with
  // GLU: gate, up), or an f32 vector. The one binding of the layout to the fields above.
  struct Slot {
    MatRef* mat = nullptr;
    MatRef* second_half = nullptr;
    std::vector<float>* vec = nullptr;
  };
  Slot SlotOf(const TensorSpec& spec);
  // Lays the remaining Q8_0/Q4_0 matrices (e.g. a GGUF file's) out for the SIMD kernels
  // (MatRef::packed) when ShouldPack; the file's pages of each packed matrix are released.
  void PackForKernels(const LoadOptions& opt);

  // Whether PackForKernels would pack Q8_0/Q4_0 matrices for this CPU and these options.
  static bool ShouldPack(const LoadOptions& opt);
  // Whether a matrix stored as `stored` and loaded as such stays a view of the mapped file
  // (until PackForKernels, for Q8_0/Q4_0).
  static bool KeepMapped(const LoadOptions& opt, DType stored);

  std::vector<std::shared_ptr<uint8_t>> owned_;  // converted or packed matrices
};

}  // namespace elm
