// Storage element types for weights and their conversions to float32. Compute is f32; 16-bit
// formats are widened on load or on the fly. The others are GGUF's block formats: Q8_0 and Q4_0
// (32 elements per block with an f16 scale, base/quant.h), which elm also writes, and the types
// elm reads from llama.cpp's files (base/kquant.h): Q4_1, Q5_0, Q5_1 and IQ4_NL (32 per block),
// and the K-quants Q2_K … Q6_K and IQ4_XS (256 per block). Sizes of those are per block.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace elm {

enum class DType {
  kF32,
  kF16,
  kBF16,
  kQ8_0,
  kQ4_0,
  // llama.cpp's other block types: read from its GGUFs, written only through llama-quantize's
  // presets (`elm quantize --type q4_k_m`, io/quant_mix.h, base/kquant_write.h).
  kQ4_1,
  kQ5_0,
  kQ5_1,
  kIQ4_NL,
  kQ2_K,
  kQ3_K,
  kQ4_K,
  kQ5_K,
  kQ6_K,
  kIQ4_XS,
};

// Whether the type is one of elm's own conversion types (`--type`, `--weights`, random models):
// F32, F16, BF16, Q8_0, Q4_0. The others are written only in llama-quantize's mixes.
inline bool DTypeWritable(DType t) {
  return static_cast<int>(t) <= static_cast<int>(DType::kQ4_0);
}

size_t DTypeSize(DType t);   // bytes per block (per element for the plain types)
size_t DTypeBlock(DType t);  // elements per block: 1, 32, or 256 for the K-quants
// Bytes of n elements (n must be a multiple of the block size).
inline size_t DTypeBytes(DType t, size_t n) {
  return n / DTypeBlock(t) * DTypeSize(t);
}
const char* DTypeName(DType t);  // "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K", ...
// Accepts the names of the writable types (any case) and "float32"/"float16"/"bfloat16".
std::optional<DType> ParseDType(std::string_view name);

inline float BF16ToF32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round to nearest even; NaN stays NaN.
inline uint16_t F32ToBF16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

float F16ToF32(uint16_t h);
uint16_t F32ToF16(float f);  // round to nearest even, overflow → inf

// Converts n elements of type `t` at `src` to float32 (n a multiple of the block size).
void ToF32(DType t, const void* src, float* dst, size_t n);
// Converts n float32 values to type `t` (quantizing for the block types: one row of n values
// with ggml's reference quantizer for llama.cpp's types, base/kquant_write.h).
void FromF32(DType t, const float* src, void* dst, size_t n);

}  // namespace elm
