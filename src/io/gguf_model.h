// OpenELM in GGUF, laid out as llama.cpp's converter writes it (keys, tensor names, dims order;
// docs/formats.md): config <-> metadata, and the GGUF tensors behind each HF tensor.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/model_config.h"
#include "config/tensor_layout.h"
#include "io/gguf.h"
#include "io/tensor_names.h"

namespace elm {

class GgufWriter;

// llama.cpp's llama_ftype values for general.file_type.
enum GgufFileType : uint32_t {
  kFileAllF32 = 0,
  kFileMostlyF16 = 1,
  kFileMostlyQ4_0 = 2,
  kFileMostlyQ8_0 = 7,
  kFileMostlyBF16 = 32,
};
uint32_t GgufFileTypeFor(DType matrices);
// The matrix type a file type stands for (nullopt for file types elm does not write).
std::optional<DType> DTypeOfGgufFileType(uint32_t file_type);

// Key elm adds to the files it writes: the HF config.json the model came from, so that a GGUF ->
// HF conversion restores it exactly (llama.cpp ignores keys it does not know).
inline constexpr const char* kGgufHfConfigKey = "elm.hf_config_json";

// The model config a GGUF file describes. From elm.hf_config_json when present (checked against
// the llama.cpp keys); otherwise built from llama.cpp's keys, the per-layer head counts and FFN
// widths read as stored (no multipliers: qkv_multipliers and ffn_multipliers stay empty). Errors
// name the file and the key.
ModelConfig ConfigFromGguf(const GgufFile& f);
// ConfigFromGguf plus, for a file without elm.hf_config_json, OpenELM multipliers
// (qkv_multipliers as a (min, max) pair, per-layer ffn_multipliers) that derive exactly the
// stored counts, as a config.json needs them. Throws naming the file when none fit.
ModelConfig HfConfigFromGguf(const GgufFile& f);

// general.* and openelm.* keys in llama.cpp's order, up to and including general.file_type.
// `n_params`: the number of weights (for general.size_label).
void AddOpenElmMetadata(GgufWriter& w, const ModelConfig& cfg, const std::string& name,
                        int64_t n_params, uint32_t file_type);
// gguf-py's size label: 4.4M, 270M, 1.1B.
std::string GgufSizeLabel(int64_t n_params);

// The GGUF tensor(s) behind one HF tensor of ExpectedTensors(cfg).
struct GgufTensorPart {
  const GgufTensorInfo* tensor;
  RowPart part;
};
struct GgufTensorFor {
  TensorSpec spec;                    // HF name and shape
  std::vector<GgufTensorPart> parts;  // one, or gate and up for proj_1 with GLU
};
// Every tensor of the layout, with shapes checked against the config (errors name the file and
// the tensor). Tensors outside the layout are reported on stderr and ignored.
std::vector<GgufTensorFor> MapGgufTensors(const GgufFile& f, const ModelConfig& cfg);

}  // namespace elm
