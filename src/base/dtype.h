// Storage element types for weights and their conversions to float32. Compute is f32; 16-bit
// formats are widened on load or on the fly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace elm {

enum class DType { kF32, kF16, kBF16 };

size_t DTypeSize(DType t);
const char* DTypeName(DType t);  // safetensors spelling: "F32", "F16", "BF16"
std::optional<DType> ParseDType(std::string_view name);  // accepts safetensors names, any case

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

// Converts n elements of type `t` at `src` to float32.
void ToF32(DType t, const void* src, float* dst, size_t n);
// Converts n float32 values to type `t`.
void FromF32(DType t, const float* src, void* dst, size_t n);

}  // namespace elm
