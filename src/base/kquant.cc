#include "base/kquant.h"

#include <cmath>
#include <cstddef>
#include <cstring>

#include "base/dtype.h"
#include "base/simd_clones.h"

// Bit-exactness with ggml needs every product and sum rounded separately: see the header and
// CMakeLists.txt (-ffp-contract=off for this file).

namespace elm {

const int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                 1,    13,   25,  38,  53,  69,  89,  113};

namespace {

constexpr int kQ = 32;  // elements per legacy block

uint32_t LoadU32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace

void UnpackQ3KScales(const uint8_t packed[12], int8_t out[16]) {
  // Low 4 bits: bytes 0..7 (low nibbles for scales 0..7, high nibbles for 8..15); high 2 bits:
  // bytes 8..11, two bits per scale, scale j in byte 8 + j % 4 at bit 2·(j / 4).
  for (int j = 0; j < 16; ++j) {
    const int lo = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4;
    const int hi = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
    out[j] = static_cast<int8_t>((lo | (hi << 4)) - 32);
  }
}

void DequantizeQ4_1(const BlockQ4_1* in, float* y, size_t n) {
  for (size_t b = 0; b < n / kQ; ++b, y += kQ) {
    const float d = F16ToF32(in[b].d), m = F16ToF32(in[b].m);
    for (int j = 0; j < kQ / 2; ++j) {
      y[j] = static_cast<float>(in[b].qs[j] & 0xF) * d + m;
      y[j + kQ / 2] = static_cast<float>(in[b].qs[j] >> 4) * d + m;
    }
  }
}

void DequantizeQ5_0(const BlockQ5_0* in, float* y, size_t n) {
  for (size_t b = 0; b < n / kQ; ++b, y += kQ) {
    const float d = F16ToF32(in[b].d);
    const uint32_t qh = LoadU32(in[b].qh);
    for (int j = 0; j < kQ / 2; ++j) {
      const int h0 = static_cast<int>(((qh >> j) << 4) & 0x10);
      const int h1 = static_cast<int>((qh >> (j + 12)) & 0x10);
      y[j] = static_cast<float>(((in[b].qs[j] & 0xF) | h0) - 16) * d;
      y[j + kQ / 2] = static_cast<float>(((in[b].qs[j] >> 4) | h1) - 16) * d;
    }
  }
}

void DequantizeQ5_1(const BlockQ5_1* in, float* y, size_t n) {
  for (size_t b = 0; b < n / kQ; ++b, y += kQ) {
    const float d = F16ToF32(in[b].d), m = F16ToF32(in[b].m);
    const uint32_t qh = LoadU32(in[b].qh);
    for (int j = 0; j < kQ / 2; ++j) {
      const int h0 = static_cast<int>(((qh >> j) << 4) & 0x10);
      const int h1 = static_cast<int>((qh >> (j + 12)) & 0x10);
      y[j] = static_cast<float>((in[b].qs[j] & 0xF) | h0) * d + m;
      y[j + kQ / 2] = static_cast<float>((in[b].qs[j] >> 4) | h1) * d + m;
    }
  }
}

void DequantizeIq4Nl(const BlockIq4Nl* in, float* y, size_t n) {
  for (size_t b = 0; b < n / kQ; ++b, y += kQ) {
    const float d = F16ToF32(in[b].d);
    for (int j = 0; j < kQ / 2; ++j) {
      y[j] = d * static_cast<float>(kIq4nlValues[in[b].qs[j] & 0xF]);
      y[j + kQ / 2] = d * static_cast<float>(kIq4nlValues[in[b].qs[j] >> 4]);
    }
  }
}

void DequantizeQ2K(const BlockQ2K* in, float* y, size_t n) {
  for (size_t b = 0; b < n / kQK; ++b) {
    const BlockQ2K& x = in[b];
    const float d = F16ToF32(x.d), dmin = F16ToF32(x.dmin);
    const uint8_t* q = x.qs;
    int is = 0;
    for (int half = 0; half < 2; ++half, q += 32) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int part = 0; part < 2; ++part) {
          const uint8_t sc = x.scales[is++];
          const float dl = d * static_cast<float>(sc & 0xF);
          const float ml = dmin * static_cast<float>(sc >> 4);
          for (int l = 0; l < 16; ++l)
            *y++ = dl * static_cast<float>((q[l + 16 * part] >> shift) & 3) - ml;
        }
      }
    }
  }
}

void DequantizeQ3K(const BlockQ3K* in, float* y, size_t n) {
  for (size_t b = 0; b < n / kQK; ++b) {
    const BlockQ3K& x = in[b];
    const float d = F16ToF32(x.d);
    int8_t scales[16];
    UnpackQ3KScales(x.scales, scales);
    const uint8_t* q = x.qs;
    int is = 0;
    uint8_t m = 1;
    for (int half = 0; half < 2; ++half, q += 32) {
      for (int shift = 0; shift < 8; shift += 2, m = static_cast<uint8_t>(m << 1)) {
        for (int part = 0; part < 2; ++part) {
          const float dl = d * static_cast<float>(scales[is++]);
          for (int l = 0; l < 16; ++l) {
            const int i = l + 16 * part;
            const int v = ((q[i] >> shift) & 3) - ((x.hmask[i] & m) ? 0 : 4);
            *y++ = dl * static_cast<float>(v);
          }
        }
      }
    }
  }
}

ELM_CLONES void DequantizeQ4K(const BlockQ4K* in, float* y, size_t n) {
  for (size_t b = 0; b < n / kQK; ++b) {
    const BlockQ4K& x = in[b];
    const float d = F16ToF32(x.d), dmin = F16ToF32(x.dmin);
    const uint8_t* q = x.qs;
    for (int is = 0; is < 8; is += 2, q += 32) {
      uint8_t sc, mn;
      ScaleMinK4(is, x.scales, &sc, &mn);
      const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(mn);
      ScaleMinK4(is + 1, x.scales, &sc, &mn);
      const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(mn);
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
  }
}

ELM_CLONES void DequantizeQ5K(const BlockQ5K* in, float* y, size_t n) {
  for (size_t b = 0; b < n / kQK; ++b) {
    const BlockQ5K& x = in[b];
    const float d = F16ToF32(x.d), dmin = F16ToF32(x.dmin);
    const uint8_t* q = x.qs;
    unsigned u1 = 1, u2 = 2;
    for (int is = 0; is < 8; is += 2, q += 32, u1 <<= 2, u2 <<= 2) {
      uint8_t sc, mn;
      ScaleMinK4(is, x.scales, &sc, &mn);
      const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(mn);
      ScaleMinK4(is + 1, x.scales, &sc, &mn);
      const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(mn);
      for (int l = 0; l < 32; ++l)
        *y++ = d1 * static_cast<float>((q[l] & 0xF) + ((x.qh[l] & u1) ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l)
        *y++ = d2 * static_cast<float>((q[l] >> 4) + ((x.qh[l] & u2) ? 16 : 0)) - m2;
    }
  }
}

ELM_CLONES void DequantizeQ6K(const BlockQ6K* in, float* y, size_t n) {
  for (size_t b = 0; b < n / kQK; ++b) {
    const BlockQ6K& x = in[b];
    const float d = F16ToF32(x.d);
    const uint8_t* ql = x.ql;
    const uint8_t* qh = x.qh;
    const int8_t* sc = x.scales;
    for (int half = 0; half < 2; ++half, y += 128, ql += 64, qh += 32, sc += 8) {
      // ggml's loop over l = 0..31 with is = l / 16, as two runs of 16 whose scales are fixed
      // (the same products, (d·sc)·q; the runs vectorize).
      for (int is = 0; is < 2; ++is) {
        const float d1 = d * static_cast<float>(sc[is]), d2 = d * static_cast<float>(sc[is + 2]);
        const float d3 = d * static_cast<float>(sc[is + 4]),
                    d4 = d * static_cast<float>(sc[is + 6]);
        for (int l = 16 * is; l < 16 * is + 16; ++l) {
          const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
          const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
          const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
          const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
          y[l] = d1 * static_cast<float>(q1);
          y[l + 32] = d2 * static_cast<float>(q2);
          y[l + 64] = d3 * static_cast<float>(q3);
          y[l + 96] = d4 * static_cast<float>(q4);
        }
      }
    }
  }
}

// The 16 levels of a sub-block fill one 16-lane vector, and the nibbles pick from it with a
// variable shuffle (one vpermps per 16 values on AVX-512; GCC lowers it on narrower ISAs; Clang,
// which builds the fuzzers, picks lane by lane): the same products as ggml's
// dl·kIq4nlValues[q], computed once per sub-block.
typedef float Iq4Levels __attribute__((vector_size(64)));
typedef int32_t Iq4Picks __attribute__((vector_size(64)));
typedef uint8_t Iq4Nibbles __attribute__((vector_size(16)));

ELM_CLONES void DequantizeIq4Xs(const BlockIq4Xs* in, float* y, size_t n) {
  Iq4Levels values;
  for (int i = 0; i < 16; ++i) values[i] = static_cast<float>(kIq4nlValues[i]);
  for (size_t b = 0; b < n / kQK; ++b) {
    const BlockIq4Xs& x = in[b];
    const float d = F16ToF32(x.d);
    const uint8_t* qs = x.qs;
    for (int ib = 0; ib < 8; ++ib, qs += 16, y += 32) {
      const int ls =
          ((x.scales_l[ib / 2] >> 4 * (ib % 2)) & 0xF) | (((x.scales_h >> 2 * ib) & 3) << 4);
      const float dl = d * static_cast<float>(ls - 32);
      const Iq4Levels level = dl * values;
      Iq4Nibbles q;
      std::memcpy(&q, qs, sizeof q);
#if defined(__clang__)  // no variable-index vector shuffle builtin: lane by lane, same values
      Iq4Levels lo, hi;
      for (int j = 0; j < 16; ++j) {
        lo[j] = level[q[j] & 0xF];
        hi[j] = level[q[j] >> 4];
      }
#else
      const Iq4Levels lo = __builtin_shuffle(level, __builtin_convertvector(q & 0xF, Iq4Picks));
      const Iq4Levels hi = __builtin_shuffle(level, __builtin_convertvector(q >> 4, Iq4Picks));
#endif
      std::memcpy(y, &lo, sizeof lo);
      std::memcpy(y + 16, &hi, sizeof hi);
    }
  }
}

namespace {

// Byte offsets of a block type's f16 scale and f16 minimum (-1: none); both -1 for plain types.
void ScaleFields(DType t, int* scale, int* min) {
  int d = 0, m = -1;
  switch (t) {
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16:
      d = -1;
      break;
    case DType::kQ4_1:
    case DType::kQ5_1:
    case DType::kQ4_K:
    case DType::kQ5_K:
      m = 2;
      break;
    case DType::kQ2_K:
      d = offsetof(BlockQ2K, d), m = offsetof(BlockQ2K, dmin);
      break;
    case DType::kQ3_K:
      d = offsetof(BlockQ3K, d);
      break;
    case DType::kQ6_K:
      d = offsetof(BlockQ6K, d);
      break;
    default:  // Q8_0, Q4_0, Q5_0, IQ4_NL, IQ4_XS: the scale first, no minimum
      break;
  }
  *scale = d;
  *min = m;
}

}  // namespace

int64_t FirstNonFiniteScale(DType t, const void* data, size_t n_blocks) {
  int d, m;
  ScaleFields(t, &d, &m);
  if (d < 0) return -1;
  const size_t bytes = DTypeSize(t);
  const auto* p = static_cast<const uint8_t*>(data);
  auto bad = [&](size_t b, int off) {
    uint16_t h;
    std::memcpy(&h, p + b * bytes + static_cast<size_t>(off), 2);
    return (h & 0x7c00u) == 0x7c00u;
  };
  for (size_t b = 0; b < n_blocks; ++b)
    if (bad(b, d) || (m >= 0 && bad(b, m))) return static_cast<int64_t>(b);
  return -1;
}

void RandomBlocks(DType t, uint64_t seed, uint8_t* dst, size_t n_blocks) {
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
  auto next = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<uint32_t>(state >> 32);
  };
  const size_t bytes = n_blocks * DTypeSize(t);
  for (size_t i = 0; i < bytes; ++i) dst[i] = static_cast<uint8_t>(next());
  int d, m;
  ScaleFields(t, &d, &m);
  for (size_t b = 0; b < n_blocks; ++b)
    for (int off : {d, m}) {
      if (off < 0) continue;
      const uint32_t r = next();
      const auto h = static_cast<uint16_t>((r & 0x83ffu) | ((1 + (r >> 16) % 8) << 10));
      std::memcpy(dst + b * DTypeSize(t) + static_cast<size_t>(off), &h, 2);
    }
}

void QuantizeQ8K(const float* x, BlockQ8K* out, size_t n) {
  for (size_t b = 0; b < n / kQK; ++b, x += kQK) {
    BlockQ8K& o = out[b];
    float amax = 0, max = 0;
    for (int j = 0; j < kQK; ++j) {
      const float a = std::fabs(x[j]);
      if (a > amax) {
        amax = a;
        max = x[j];
      }
    }
    if (amax == 0) {
      std::memset(&o, 0, sizeof(o));
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < kQK; ++j) {
      const int v = static_cast<int>(std::nearbyint(iscale * x[j]));
      o.qs[j] = static_cast<int8_t>(v > 127 ? 127 : v);
    }
    for (int j = 0; j < kQK / 16; ++j) {
      int s = 0;
      for (int i = 0; i < 16; ++i) s += o.qs[16 * j + i];
      o.bsums[j] = static_cast<int16_t>(s);
    }
    o.d = 1.0f / iscale;
  }
}

}  // namespace elm
