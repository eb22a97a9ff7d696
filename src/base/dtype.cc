#include "base/dtype.h"

#include "base/error.h"
#include "base/kquant.h"
#include "base/kquant_write.h"
#include "base/quant.h"

#include <cctype>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <string>

namespace elm {

namespace {

// One row per DType, in enum order: name, bytes per block, elements per block.
struct DTypeInfo {
  const char* name;
  size_t block_bytes;
  size_t block_elems;
};
// Block layouts: base/quant.h (Q8_0, Q4_0) and base/kquant.h (the rest).
constexpr DTypeInfo kDTypes[] = {
    {"F32", 4, 1},      {"F16", 2, 1},      {"BF16", 2, 1},       {"Q8_0", 34, 32},
    {"Q4_0", 18, 32},   {"Q4_1", 20, 32},   {"Q5_0", 22, 32},     {"Q5_1", 24, 32},
    {"IQ4_NL", 18, 32}, {"Q2_K", 84, 256},  {"Q3_K", 110, 256},   {"Q4_K", 144, 256},
    {"Q5_K", 176, 256}, {"Q6_K", 210, 256}, {"IQ4_XS", 136, 256},
};
static_assert(std::size(kDTypes) == static_cast<size_t>(DType::kIQ4_XS) + 1);

const DTypeInfo& Info(DType t) {
  return kDTypes[static_cast<size_t>(t)];
}

// Element `i` of an array of T that may sit at any address (a mapped file puts tensors at the
// offsets the file says, odd ones included): a fixed-size memcpy, which compiles to a plain load.
template <typename T>
T LoadAt(const void* base, size_t i) {
  T v;
  std::memcpy(&v, static_cast<const uint8_t*>(base) + i * sizeof(T), sizeof(T));
  return v;
}

template <typename T>
bool IsAligned(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % alignof(T) == 0;
}

// Dequantizes blocks of type B through `deq`, directly when `src` is aligned for B, else one
// block at a time through an aligned copy.
template <typename B, size_t kElems = kQBlock, typename Fn>
void DequantizeBlocks(const void* src, float* dst, size_t n, Fn deq) {
  if (IsAligned<B>(src)) return deq(static_cast<const B*>(src), dst, n);
  for (size_t b = 0; b < n / kElems; ++b) {
    const B block = LoadAt<B>(src, b);
    deq(&block, dst + b * kElems, kElems);
  }
}

// Quantizes into blocks of type B through `quant`, directly when `dst` is aligned for B, else one
// block at a time through an aligned copy.
template <typename B, typename Fn>
void QuantizeBlocks(const float* src, void* dst, size_t n, Fn quant) {
  if (IsAligned<B>(dst)) return quant(src, static_cast<B*>(dst), n);
  constexpr auto kElems = static_cast<size_t>(kQBlock);
  for (size_t b = 0; b < n / kElems; ++b) {
    B block;
    quant(src + b * kElems, &block, kElems);
    std::memcpy(static_cast<uint8_t*>(dst) + b * sizeof(B), &block, sizeof(B));
  }
}

}  // namespace

size_t DTypeSize(DType t) {
  return Info(t).block_bytes;
}

size_t DTypeBlock(DType t) {
  return Info(t).block_elems;
}

const char* DTypeName(DType t) {
  return Info(t).name;
}

std::optional<DType> ParseDType(std::string_view name) {
  std::string up(name);
  for (char& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (up == "FLOAT32") return DType::kF32;
  if (up == "FLOAT16") return DType::kF16;
  if (up == "BFLOAT16") return DType::kBF16;
  for (size_t i = 0; i < std::size(kDTypes); ++i)
    if (up == kDTypes[i].name && DTypeWritable(static_cast<DType>(i))) return static_cast<DType>(i);
  return std::nullopt;
}

float F16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t F32ToF16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // ≥ 65520 → inf
  if (abs < 0x38800000u) {               // below the smallest normal half: subnormal or zero
    if (abs < 0x33000000u) return sign;  // < 2^-25 rounds to zero
    const uint32_t exp = abs >> 23;
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - exp;  // 14 + (113 - exp)
    uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t v = abs - 0x38000000u;  // rebias exponent 127 → 15
  v += 0xfffu + ((v >> 13) & 1u);  // round to nearest even on the 13 dropped bits
  return static_cast<uint16_t>(sign | (v >> 13));
}

void ToF32(DType t, const void* src, float* dst, size_t n) {
  switch (t) {
    case DType::kF32:
      if (n > 0) std::memcpy(dst, src, n * 4);  // an empty tensor's pointers may be null
      return;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) dst[i] = F16ToF32(LoadAt<uint16_t>(src, i));
      return;
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) dst[i] = BF16ToF32(LoadAt<uint16_t>(src, i));
      return;
    case DType::kQ8_0:
      DequantizeBlocks<BlockQ8_0>(src, dst, n, DequantizeQ8_0);
      return;
    case DType::kQ4_0:
      DequantizeBlocks<BlockQ4_0>(src, dst, n, DequantizeQ4_0);
      return;
    case DType::kQ4_1:
      DequantizeBlocks<BlockQ4_1>(src, dst, n, DequantizeQ4_1);
      return;
    case DType::kQ5_0:
      DequantizeBlocks<BlockQ5_0>(src, dst, n, DequantizeQ5_0);
      return;
    case DType::kQ5_1:
      DequantizeBlocks<BlockQ5_1>(src, dst, n, DequantizeQ5_1);
      return;
    case DType::kIQ4_NL:
      DequantizeBlocks<BlockIq4Nl>(src, dst, n, DequantizeIq4Nl);
      return;
    case DType::kQ2_K:
      DequantizeBlocks<BlockQ2K, kQK>(src, dst, n, DequantizeQ2K);
      return;
    case DType::kQ3_K:
      DequantizeBlocks<BlockQ3K, kQK>(src, dst, n, DequantizeQ3K);
      return;
    case DType::kQ4_K:
      DequantizeBlocks<BlockQ4K, kQK>(src, dst, n, DequantizeQ4K);
      return;
    case DType::kQ5_K:
      DequantizeBlocks<BlockQ5K, kQK>(src, dst, n, DequantizeQ5K);
      return;
    case DType::kQ6_K:
      DequantizeBlocks<BlockQ6K, kQK>(src, dst, n, DequantizeQ6K);
      return;
    case DType::kIQ4_XS:
      DequantizeBlocks<BlockIq4Xs, kQK>(src, dst, n, DequantizeIq4Xs);
      return;
  }
}

void FromF32(DType t, const float* src, void* dst, size_t n) {
  switch (t) {
    case DType::kF32:
      if (n > 0) std::memcpy(dst, src, n * 4);
      return;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t h = F32ToF16(src[i]);
        std::memcpy(static_cast<uint8_t*>(dst) + 2 * i, &h, 2);
      }
      return;
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t h = F32ToBF16(src[i]);
        std::memcpy(static_cast<uint8_t*>(dst) + 2 * i, &h, 2);
      }
      return;
    case DType::kQ8_0:
      QuantizeBlocks<BlockQ8_0>(src, dst, n, QuantizeQ8_0);
      return;
    case DType::kQ4_0:
      QuantizeBlocks<BlockQ4_0>(src, dst, n, QuantizeQ4_0);
      return;
    default:  // llama.cpp's other block types
      QuantizeRowsLikeGgml(t, src, dst, 1, static_cast<int64_t>(n), nullptr);
      return;
  }
}

}  // namespace elm
