// Storage element types for weights and their conversions to float32. Compute is f32; 16-bit
// formats are widened on load or on the fly. Q8_0 and Q4_0 are GGUF's block formats (32 elements
// per block with an f16 scale, see base/quant.h): sizes of those are per block, not per element.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace elm {

enum class DType { kF32, kF16, kBF16, kQ8_0, kQ4_0 };

size_t DTypeSize(DType t);   // bytes per block (per element for the plain types)
size_t DTypeBlock(DType t);  // elements per block: 1, or 32 for Q8_0/Q4_0
// Bytes of n elements (n must be a multiple of the block size).
inline size_t DTypeBytes(DType t, size_t n) {
  return n / DTypeBlock(t) * DTypeSize(t);
}
const char* DTypeName(DType t);  // "F32", "F16", "BF16", "Q8_0", "Q4_0"
// Accepts the names above (any case) and "float32"/"float16"/"bfloat16".
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
// Converts n float32 values to type `t` (quantizing for the block types).
void FromF32(DType t, const float* src, void* dst, size_t n);

}  // namespace elm
