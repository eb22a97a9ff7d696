#include "base/quant.h"

#include <cmath>

#include "base/dtype.h"

namespace elm {

void QuantizeQ8_0(const float* x, BlockQ8_0* out, size_t n) {
  for (size_t b = 0; b < n / kQBlock; ++b) {
    const float* xb = x + b * kQBlock;
    float amax = 0;
    for (int i = 0; i < kQBlock; ++i) amax = std::max(amax, std::fabs(xb[i]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    out[b].d = F32ToF16(d);
    for (int i = 0; i < kQBlock; ++i) out[b].q[i] = static_cast<int8_t>(std::lround(xb[i] * id));
  }
}

void DequantizeQ8_0(const BlockQ8_0* in, float* y, size_t n) {
  for (size_t b = 0; b < n / kQBlock; ++b) {
    const float d = F16ToF32(in[b].d);
    for (int i = 0; i < kQBlock; ++i) y[b * kQBlock + i] = d * static_cast<float>(in[b].q[i]);
  }
}

void QuantizeQ4_0(const float* x, BlockQ4_0* out, size_t n) {
  for (size_t b = 0; b < n / kQBlock; ++b) {
    const float* xb = x + b * kQBlock;
    // The element of largest magnitude maps to -8 exactly (keeping its sign), as llama.cpp does.
    float amax = 0, max = 0;
    for (int i = 0; i < kQBlock; ++i) {
      if (std::fabs(xb[i]) > amax) {
        amax = std::fabs(xb[i]);
        max = xb[i];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    out[b].d = F32ToF16(d);
    for (int j = 0; j < kQBlock / 2; ++j) {
      const float v0 = xb[j] * id + 8.5f, v1 = xb[j + kQBlock / 2] * id + 8.5f;
      const int q0 = std::min(15, static_cast<int>(v0));
      const int q1 = std::min(15, static_cast<int>(v1));
      out[b].nib[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void DequantizeQ4_0(const BlockQ4_0* in, float* y, size_t n) {
  for (size_t b = 0; b < n / kQBlock; ++b) {
    const float d = F16ToF32(in[b].d);
    for (int j = 0; j < kQBlock / 2; ++j) {
      y[b * kQBlock + j] = d * static_cast<float>((in[b].nib[j] & 15) - 8);
      y[b * kQBlock + j + kQBlock / 2] = d * static_cast<float>((in[b].nib[j] >> 4) - 8);
    }
  }
}

void PackQ8_0x16(const BlockQ8_0* in, BlockQ8_0x16* out, int64_t rows, int64_t nb) {
  for (int64_t g = 0; g < rows / kPackRows; ++g)
    for (int64_t b = 0; b < nb; ++b) {
      BlockQ8_0x16& o = out[g * nb + b];
      for (int j = 0; j < kPackRows; ++j) {
        const BlockQ8_0& src = in[(g * kPackRows + j) * nb + b];
        o.d[j] = src.d;
        for (int e = 0; e < kQBlock; ++e)
          o.q[e / 4][j][e % 4] = static_cast<uint8_t>(static_cast<uint8_t>(src.q[e]) ^ 0x80u);
      }
    }
}

void PackQ4_0x16(const BlockQ4_0* in, BlockQ4_0x16* out, int64_t rows, int64_t nb) {
  for (int64_t g = 0; g < rows / kPackRows; ++g)
    for (int64_t b = 0; b < nb; ++b) {
      BlockQ4_0x16& o = out[g * nb + b];
      for (int j = 0; j < kPackRows; ++j) {
        const BlockQ4_0& src = in[(g * kPackRows + j) * nb + b];
        o.d[j] = src.d;
        for (int e = 0; e < kQBlock / 2; ++e) o.nib[e / 4][j][e % 4] = src.nib[e];
      }
    }
}

void DequantizePackedRowQ8_0(const BlockQ8_0x16* m, int64_t r, int64_t nb, float* y) {
  const int64_t g = r / kPackRows;
  const int j = static_cast<int>(r % kPackRows);
  for (int64_t b = 0; b < nb; ++b) {
    const BlockQ8_0x16& blk = m[g * nb + b];
    const float d = F16ToF32(blk.d[j]);
    for (int e = 0; e < kQBlock; ++e)
      y[b * kQBlock + e] = d * static_cast<float>(static_cast<int>(blk.q[e / 4][j][e % 4]) - 128);
  }
}

void DequantizePackedRowQ4_0(const BlockQ4_0x16* m, int64_t r, int64_t nb, float* y) {
  const int64_t g = r / kPackRows;
  const int j = static_cast<int>(r % kPackRows);
  for (int64_t b = 0; b < nb; ++b) {
    const BlockQ4_0x16& blk = m[g * nb + b];
    const float d = F16ToF32(blk.d[j]);
    for (int e = 0; e < kQBlock / 2; ++e) {
      const uint8_t v = blk.nib[e / 4][j][e % 4];
      y[b * kQBlock + e] = d * static_cast<float>((v & 15) - 8);
      y[b * kQBlock + e + kQBlock / 2] = d * static_cast<float>((v >> 4) - 8);
    }
  }
}

void BlockSumsQ8_0(const BlockQ8_0* x, int32_t* sums, int64_t n) {
  for (int64_t b = 0; b < n; ++b) {
    int32_t s = 0;
    for (int e = 0; e < kQBlock; ++e) s += x[b].q[e];
    sums[b] = s;
  }
}

}  // namespace elm
