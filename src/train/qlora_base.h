// QLoRA's frozen base held quantized (docs/training.md, "QLoRA: a quantized base"): the four
// linears of every decoder layer (qkv_proj, out_proj, proj_1, proj_2) are stored as NF4 with double
// quantization (bitsandbytes' `load_in_4bit`, `bnb_4bit_quant_type: nf4`,
// `bnb_4bit_use_double_quant`), or as elm's Q8_0 / Q4_0 blocks, and their f32 copies in the
// parameter slab are given back to the operating system. Every matrix product with such a weight
// (train/train_gemm.h) dequantizes it into a scratch matrix first, so the forward pass and the
// gradient with respect to the input go through the dequantized base; the base gets no gradient.
// Embeddings, the untied lm_head and the norms stay f32, as bitsandbytes leaves them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "train/params.h"

namespace elm {

enum class BaseQuant { kNf4, kQ8_0, kQ4_0 };
// "nf4", "q8_0" or "q4_0"; throws naming `key` otherwise.
BaseQuant ParseBaseQuant(const std::string& name, const std::string& key);
const char* BaseQuantName(BaseQuant q);

// One quantized matrix [rows, cols] (row-major, PyTorch's [out, in]).
// NF4 (Dettmers et al. 2023, bitsandbytes): blocks of 64 consecutive elements of the flattened
// matrix (across rows; the last block may be short), each element the
// index of the nearest of the 16 NF4 levels times the block's absmax; two indices a byte, the
// first in the high nibble. Double quantization: the block absmaxes minus their mean are stored as
// int8 with one f32 scale per 256 absmaxes (bitsandbytes uses its dynamic 8-bit code for this
// level; elm uses a linear one, docs/numerics.md).
struct QuantizedMatrix {
  BaseQuant kind = BaseQuant::kNf4;
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> data;        // NF4 nibbles, or the Q8_0 / Q4_0 blocks
  bool double_quant = true;         // NF4 only
  std::vector<float> absmax;        // NF4 without double quantization: one per 64-block
  std::vector<int8_t> qabsmax;      // NF4 with double quantization: one per 64-block
  std::vector<float> absmax_scale;  // one per 256 absmaxes
  float absmax_offset = 0;          // the mean absmax
  size_t bytes() const;
};

inline constexpr int64_t kNf4Block = 64;
inline constexpr int64_t kNf4AbsmaxBlock = 256;
// The 16 NF4 levels (bitsandbytes' table, ascending, −1 … 1 with an exact 0).
const float* Nf4Levels();

QuantizedMatrix QuantizeMatrix(const float* w, int64_t rows, int64_t cols, BaseQuant kind,
                               bool double_quant = true);
// out[rows · cols] = the dequantized matrix. Deterministic (the same bits whatever the threads).
void DequantizeMatrix(const QuantizedMatrix& q, float* out);
// out[count · cols] = rows [row0, row0 + count) of the dequantized matrix, the same bits as
// DequantizeMatrix gives them (QDoRA's weight norm reads the base a row at a time this way, PEFT's
// dequantize_module_weight without an f32 copy of the matrix). Single-threaded.
void DequantizeRows(const QuantizedMatrix& q, int64_t row0, int64_t count, float* out);

// The weight registered for the f32 slot `w` (the first element of a base matrix in a parameter
// slab), or null. TrainGemm consults it for every weight operand.
const QuantizedMatrix* FindQuantizedWeight(const float* w);

// Quantizes the layer linears of `ps` (a LoRA run's frozen base, already loaded) one at a time,
// registers each under its slot and releases the f32 copy's memory (the slot then reads as zeros:
// only TrainGemm may use it). Unregisters on destruction; `ps` must outlive it. Throws naming the
// tensor when its columns are not whole blocks of the format.
class QuantizedBase {
 public:
  QuantizedBase(ParamSet& ps, BaseQuant kind, bool double_quant = true);
  // Loads `src` into `ps` (allocated, never written) and quantizes the layer linears straight from
  // it, one tensor at a time (LoadParams with a claim): their range of the slab is never written,
  // so the f32 copy of the base never exists; the rest is loaded as LoadParams loads it. The same
  // quantized matrices, bit for bit, as loading then quantizing.
  QuantizedBase(ParamSet& ps, const ModelSource& src, BaseQuant kind, bool double_quant = true);
  ~QuantizedBase();
  QuantizedBase(const QuantizedBase&) = delete;
  QuantizedBase& operator=(const QuantizedBase&) = delete;

  BaseQuant kind() const { return kind_; }
  size_t quantized_bytes() const;                  // what the quantized matrices hold
  size_t f32_bytes() const { return f32_bytes_; }  // what their f32 copies held
  size_t count() const { return mats_.size(); }

 private:
  void CheckShapes(const ParamSet& ps) const;
  void Unregister();
  // Quantizes `w`, the f32 values of the base matrix `t` of the slab `slot`, and registers it.
  void Hold(const ParamTensor& t, float* slot, const float* w, bool double_quant);

  BaseQuant kind_;
  std::vector<std::pair<const float*, std::unique_ptr<QuantizedMatrix>>> mats_;
  size_t f32_bytes_ = 0;
};

// The base as QLoRA sees it, in f32: every layer linear of `ps` replaced by its quantized-then-
// dequantized values (the reference of QLoRA's equivalence test, and `elm.lora_base_weights`-style
// fake quantization in NF4).
void RoundBaseThroughQuant(ParamSet& ps, BaseQuant kind, bool double_quant = true);

// Resident and peak resident memory of this process in bytes (/proc/self/status VmRSS, VmHWM; 0
// where unavailable), and a reset of the peak (so a phase's peak can be read).
size_t ResidentBytes();
size_t PeakResidentBytes();
void ResetPeakResident();

}  // namespace elm
