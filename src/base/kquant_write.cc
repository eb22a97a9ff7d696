#include "base/kquant_write.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <vector>

#include "base/error.h"
#include "base/quant.h"

// Bit-exactness with ggml's quantizers needs every product and sum rounded separately, in the
// order ggml computes them: CMakeLists.txt compiles this file with -ffp-contract=off. Products
// such as w·x·l are evaluated left to right, as C does: (w·x)·l.

namespace elm {

namespace {

constexpr float kGroupMaxEps = 1e-15f;  // below this a group counts as all zero
constexpr int kLegacyBlock = 32;        // elements per legacy block

// ---- Scale searches (docs/formats.md) ----

// Symmetric levels -nmax..nmax-1 with one scale; rmse_type 1 weighs each element by x² (or by
// `qw` when given) and tries 18 scales around nmax / max. L receives levels offset by nmax.
float MakeQxQuants(int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* qw) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = static_cast<float>(-nmax) / max;
  if (rmse_type == 0) {
    for (int i = 0; i < n; ++i) {
      const int l = NearestInt(iscale * x[i]);
      L[i] = static_cast<int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, l)));
    }
    return 1 / iscale;
  }
  auto weight = [&](int i) {
    if (qw) return qw[i];
    switch (rmse_type) {
      case 1:
        return x[i] * x[i];
      case 2:
        return 1.0f;
      case 3:
        return std::fabs(x[i]);
      default:
        return std::sqrt(std::fabs(x[i]));
    }
  };
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = NearestInt(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = weight(i);
    const auto fl = static_cast<float>(l);
    sumlx += w * x[i] * fl;
    suml2 += w * fl * fl;
  }
  float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = NearestInt(iscale * x[i]);
      l = std::max(-nmax, std::min(nmax - 1, l));
      const float w = weight(i);
      const auto fl = static_cast<float>(l);
      sumlx += w * x[i] * fl;
      suml2 += w * fl * fl;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        const int l = NearestInt(iscale * x[i]);
        L[i] = static_cast<int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Q3_K's search: levels -nmax..nmax-1 weighted by x², refined one element at a time (up to five
// passes) while the weighted fit improves. L receives levels offset by nmax.
float MakeQ3Quants(int n, int nmax, const float* x, int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  const float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = NearestInt(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    L[i] = static_cast<int8_t>(l);
    const float w = x[i] * x[i];
    const auto fl = static_cast<float>(l);
    sumlx += w * x[i] * fl;
    suml2 += w * fl * fl;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      const auto li = static_cast<float>(L[i]);
      float slx = sumlx - w * x[i] * li;
      if (slx > 0) {
        float sl2 = suml2 - w * li * li;
        int new_l = NearestInt(x[i] * sl2 / slx);
        new_l = std::max(-nmax, std::min(nmax - 1, new_l));
        if (new_l != L[i]) {
          const auto fl = static_cast<float>(new_l);
          slx += w * x[i] * fl;
          sl2 += w * fl * fl;
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<int8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (n_changed == 0) break;
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Levels 0..nmax with a scale and a minimum (x ≈ scale·l - the_min): starts from the min/max
// fit, then least-squares fits for nstep + 1 trial scales (rmin + rdelta·is + nmax)/(max - min),
// keeping the one of smallest weighted error (absolute when use_mad, squared otherwise).
float MakeQkx2Quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                     float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                     bool use_mad) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.f;
  }
  const auto fnmax = static_cast<float>(nmax);
  float iscale = fnmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = NearestInt(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    float diff = scale * static_cast<float>(L[i]) + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    best_error += weights[i] * diff;
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + fnmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = NearestInt(iscale * (x[i] - min));
      l = std::max(0, std::min(nmax, l));
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      const auto fl = static_cast<float>(l);
      sum_l += w * fl;
      sum_l2 += w * fl * fl;
      sum_xl += w * fl * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        cur_error += weights[i] * diff;
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// The weighted variant used with importance weights (ggml's make_qkx3_quants): as MakeQkx2Quants,
// with levels of trial scales clamped before rounding.
float MakeQkx3Quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                     float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                     bool use_mad) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max <= min) {
    std::memset(L, 0, static_cast<size_t>(n));
    *the_min = -min;
    return 0.f;
  }
  const auto fnmax = static_cast<float>(nmax);
  float iscale = fnmax / (max - min);
  float scale = 1 / iscale;
  float best_mad = 0;
  for (int i = 0; i < n; ++i) {
    const int l = NearestInt(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    float diff = scale * static_cast<float>(L[i]) + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    best_mad += weights[i] * diff;
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + fnmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const float v = iscale * (x[i] - min);
      const int l = v > 0 ? NearestInt(std::min(v, fnmax)) : 0;
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      const auto fl = static_cast<float>(l);
      sum_l += w * fl;
      sum_l2 += w * fl * fl;
      sum_xl += w * fl * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float mad = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        mad += weights[i] * diff;
      }
      if (mad < best_mad) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_mad = mad;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// Non-negative levels 0..nmax for the sub-block scales and minimums under importance weights
// (ggml's make_qp_quants).
float MakeQpQuants(int n, int nmax, const float* x, uint8_t* L, const float* quant_weights) {
  float max = 0;
  for (int i = 0; i < n; ++i) max = std::max(max, x[i]);
  if (max < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  const auto fnmax = static_cast<float>(nmax);
  float iscale = fnmax / max;
  for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(NearestInt(iscale * x[i]));
  const float scale = 1 / iscale;
  float best_mse = 0;
  for (int i = 0; i < n; ++i) {
    const float diff = x[i] - scale * static_cast<float>(L[i]);
    best_mse += quant_weights[i] * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    const float iscale_is = (0.1f * static_cast<float>(is) + fnmax) / max;
    const float scale_is = 1 / iscale_is;
    float mse = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::min(nmax, NearestInt(iscale_is * x[i]));
      const float diff = x[i] - scale_is * static_cast<float>(l);
      mse += quant_weights[i] * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_is;
    }
  }
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::min(nmax, NearestInt(iscale * x[i]));
    L[i] = static_cast<uint8_t>(l);
    const float w = quant_weights[i];
    const auto fl = static_cast<float>(l);
    sumlx += w * x[i] * fl;
    suml2 += w * fl * fl;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = quant_weights[i];
      const auto li = static_cast<float>(L[i]);
      float slx = sumlx - w * x[i] * li;
      float sl2 = suml2 - w * li * li;
      if (slx > 0 && sl2 > 0) {
        const int new_l = std::min(nmax, NearestInt(x[i] * sl2 / slx));
        if (new_l != L[i]) {
          const auto fl = static_cast<float>(new_l);
          slx += w * x[i] * fl;
          sl2 += w * fl * fl;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<uint8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (n_changed == 0) break;
  }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// ---- Packing helpers ----

// Q2_K/Q3_K: four 2-bit levels per byte, element j + 32k of each 128 in bits 2k.
void Pack2Bit(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < kQK; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                           (L[j + l + 96] << 6));
}

// Q4_K/Q5_K: 6-bit scale and min j packed into 12 bytes (the inverse of ScaleMinK4).
void PackScaleMinK4(int j, uint8_t ls, uint8_t lm, uint8_t* scales) {
  if (j < 4) {
    scales[j] = ls;
    scales[j + 4] = lm;
  } else {
    scales[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
    scales[j - 4] = static_cast<uint8_t>(scales[j - 4] | ((ls >> 4) << 6));
    scales[j] = static_cast<uint8_t>(scales[j] | ((lm >> 4) << 6));
  }
}

// Q4_K/Q5_K: the final levels from the stored (f16) scales and minimums; sub-blocks whose scale
// is zero keep the search's levels.
void RequantizeK4(const float* x, const uint8_t* scales, uint16_t d16, uint16_t dmin16, int nmax,
                  uint8_t* L) {
  for (int j = 0; j < kQK / 32; ++j) {
    uint8_t sc, m;
    ScaleMinK4(j, scales, &sc, &m);
    const float d = F16ToF32(d16) * static_cast<float>(sc);
    if (d == 0) continue;
    const float dm = F16ToF32(dmin16) * static_cast<float>(m);
    for (int ii = 0; ii < 32; ++ii) {
      const int l = NearestInt((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    }
  }
}

void PackKLevels(const uint8_t* L, BlockQ4K* y) {
  uint8_t* q = y->qs;
  for (int j = 0; j < kQK; j += 64, q += 32)
    for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
}

void PackKLevels(const uint8_t* L, BlockQ5K* y) {
  uint8_t* qh = y->qh;
  uint8_t* ql = y->qs;
  std::memset(qh, 0, kQK / 8);
  uint8_t m1 = 1, m2 = 2;
  for (int n = 0; n < kQK; n += 64) {
    for (int j = 0; j < 32; ++j) {
      int l1 = L[n + j];
      if (l1 > 15) {
        l1 -= 16;
        qh[j] = static_cast<uint8_t>(qh[j] | m1);
      }
      int l2 = L[n + j + 32];
      if (l2 > 15) {
        l2 -= 16;
        qh[j] = static_cast<uint8_t>(qh[j] | m2);
      }
      ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
    }
    m1 = static_cast<uint8_t>(m1 << 2);
    m2 = static_cast<uint8_t>(m2 << 2);
    ql += 32;
  }
}

// Q3_K: 16 six-bit scales (already offset by 32) into 12 bytes.
void PackQ3KScales(const int* ls, uint8_t* scales) {
  std::memset(scales, 0, 12);
  for (int j = 0; j < 16; ++j) {
    int l = ls[j];
    if (j < 8) {
      scales[j] = static_cast<uint8_t>(l & 0xF);
    } else {
      scales[j - 8] = static_cast<uint8_t>(scales[j - 8] | ((l & 0xF) << 4));
    }
    l >>= 4;
    scales[j % 4 + 8] = static_cast<uint8_t>(scales[j % 4 + 8] | (l << (2 * (j / 4))));
  }
}

// Q3_K: final levels from the stored scales, the high bits into hmask, the low two into qs.
void FinishQ3K(const float* x, int8_t* L, BlockQ3K* y) {
  int8_t sc[16];
  UnpackQ3KScales(y->scales, sc);
  for (int j = 0; j < 16; ++j) {
    const float d = F16ToF32(y->d) * static_cast<float>(sc[j]);
    if (d == 0) continue;
    for (int ii = 0; ii < 16; ++ii) {
      const int l = NearestInt(x[16 * j + ii] / d);
      L[16 * j + ii] = static_cast<int8_t>(std::max(-4, std::min(3, l)) + 4);
    }
  }
  std::memset(y->hmask, 0, kQK / 8);
  int m = 0;
  uint8_t hm = 1;
  uint8_t low[kQK];
  for (int j = 0; j < kQK; ++j) {
    int l = L[j];
    if (l > 3) {
      y->hmask[m] = static_cast<uint8_t>(y->hmask[m] | hm);
      l -= 4;
    }
    low[j] = static_cast<uint8_t>(l);
    if (++m == kQK / 8) {
      m = 0;
      hm = static_cast<uint8_t>(hm << 1);
    }
  }
  Pack2Bit(low, y->qs);
}

// Q6_K: final levels from the stored int8 scales, packed 4 + 2 bits.
void FinishQ6K(const float* x, int8_t* L, BlockQ6K* y) {
  for (int j = 0; j < kQK / 16; ++j) {
    const float d = F16ToF32(y->d) * static_cast<float>(y->scales[j]);
    if (d == 0) continue;
    for (int ii = 0; ii < 16; ++ii) {
      const int l = NearestInt(x[16 * j + ii] / d);
      L[16 * j + ii] = static_cast<int8_t>(std::max(-32, std::min(31, l)) + 32);
    }
  }
  uint8_t* ql = y->ql;
  uint8_t* qh = y->qh;
  for (int j = 0; j < kQK; j += 128, ql += 64, qh += 32) {
    for (int l = 0; l < 32; ++l) {
      const auto q1 = static_cast<uint8_t>(L[j + l] & 0xF);
      const auto q2 = static_cast<uint8_t>(L[j + l + 32] & 0xF);
      const auto q3 = static_cast<uint8_t>(L[j + l + 64] & 0xF);
      const auto q4 = static_cast<uint8_t>(L[j + l + 96] & 0xF);
      ql[l] = static_cast<uint8_t>(q1 | (q3 << 4));
      ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
      qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                   ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
    }
  }
}

// Q6_K's scale step shared by both searches: int8 sub-block scales relative to the largest.
void Q6KFromScales(const float* x, const float* scales, int8_t* L, BlockQ6K* y) {
  float max_scale = 0, max_abs_scale = 0;
  for (int ib = 0; ib < kQK / 16; ++ib) {
    const float abs_scale = std::fabs(scales[ib]);
    if (abs_scale > max_abs_scale) {
      max_abs_scale = abs_scale;
      max_scale = scales[ib];
    }
  }
  if (max_abs_scale < kGroupMaxEps) {
    std::memset(y, 0, sizeof(*y));
    y->d = F32ToF16(0.f);
    return;
  }
  const float iscale = -128.f / max_scale;
  y->d = F32ToF16(1 / iscale);
  for (int ib = 0; ib < kQK / 16; ++ib)
    y->scales[ib] = static_cast<int8_t>(std::min(127, NearestInt(iscale * scales[ib])));
  FinishQ6K(x, L, y);
}

// IQ4 levels: the index of the kIq4nlValues entry nearest x (ties to the larger), by exact
// comparison with the midpoints (2x against the sum of two neighbours).
int BestIndexIq4(float x) {
  const float x2 = x + x;
  int idx = 0;
  for (int step = 8; step > 0; step >>= 1) {
    const int j = idx + step;
    idx = x2 >= static_cast<float>(kIq4nlValues[j - 1] + kIq4nlValues[j]) ? j : idx;
  }
  return idx;
}

// IQ4_NL (super = 32) and IQ4_XS (super = 256, sub-blocks of 32): per sub-block a scale search
// over 15 trial scales around the largest element mapping to -127; IQ4_XS then stores 6-bit
// sub-block scales relative to d = -max/32. `qw`: importance weights of the super-block or null.
void QuantizeIq4(int super, const float* x, uint16_t* dh, uint8_t* q4, uint16_t* scales_h,
                 uint8_t* scales_l, const float* qw) {
  constexpr int kBlock = 32;
  constexpr int kTry = 7;
  float sigma2 = 0;
  for (int j = 0; j < super; ++j) sigma2 += x[j] * x[j];
  sigma2 *= 2.f / static_cast<float>(super);
  std::memset(q4, 0, static_cast<size_t>(super / 2));
  *dh = F32ToF16(0.f);
  float scales[kQK / kBlock];
  uint8_t L[kQK];
  float weight[kBlock];
  const auto v0 = static_cast<float>(kIq4nlValues[0]);
  float max_scale = 0, amax_scale = 0;
  for (int ib = 0; ib < super / kBlock; ++ib) {
    const float* xb = x + ib * kBlock;
    uint8_t* Lb = L + ib * kBlock;
    if (qw) {
      for (int j = 0; j < kBlock; ++j)
        weight[j] = qw[ib * kBlock + j] * std::sqrt(sigma2 + xb[j] * xb[j]);
    } else {
      for (int j = 0; j < kBlock; ++j) weight[j] = xb[j] * xb[j];
    }
    float amax = 0, max = 0;
    for (int j = 0; j < kBlock; ++j) {
      const float ax = std::fabs(xb[j]);
      if (ax > amax) {
        amax = ax;
        max = xb[j];
      }
    }
    if (amax < kGroupMaxEps) {
      scales[ib] = 0;
      std::memset(Lb, 0, kBlock);
      continue;
    }
    float d = -max / v0;
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < kBlock; ++j) {
      const int l = BestIndexIq4(id * xb[j]);
      Lb[j] = static_cast<uint8_t>(l);
      const auto q = static_cast<float>(kIq4nlValues[l]);
      const float w = weight[j];
      sumqx += w * q * xb[j];
      sumq2 += w * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
    float best = d * sumqx;
    for (int itry = -kTry; itry <= kTry; ++itry) {
      id = static_cast<float>(itry + kIq4nlValues[0]) / max;
      sumqx = sumq2 = 0;
      for (int j = 0; j < kBlock; ++j) {
        const int l = BestIndexIq4(id * xb[j]);
        const auto q = static_cast<float>(kIq4nlValues[l]);
        const float w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
      }
      if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
        d = sumqx / sumq2;
        best = d * sumqx;
      }
    }
    scales[ib] = d;
    const float abs_d = std::fabs(d);
    if (abs_d > amax_scale) {
      amax_scale = abs_d;
      max_scale = d;
    }
  }
  if (super / kBlock > 1) {
    *scales_h = 0;
    const float d = -max_scale / 32;
    *dh = F32ToF16(d);
    const float id = d != 0 ? 1 / d : 0.f;
    for (int ib = 0; ib < super / kBlock; ++ib) {
      int l = NearestInt(id * scales[ib]);
      l = std::max(-32, std::min(31, l));
      const float dl = d * static_cast<float>(l);
      const float idl = dl != 0 ? 1 / dl : 0.f;
      uint8_t* Lb = L + ib * kBlock;
      const float* xb = x + ib * kBlock;
      for (int j = 0; j < kBlock; ++j) Lb[j] = static_cast<uint8_t>(BestIndexIq4(idl * xb[j]));
      l += 32;
      const auto l_l = static_cast<uint8_t>(l & 0xf);
      const auto l_h = static_cast<uint8_t>(l >> 4);
      if (ib % 2 == 0) {
        scales_l[ib / 2] = l_l;
      } else {
        scales_l[ib / 2] = static_cast<uint8_t>(scales_l[ib / 2] | (l_l << 4));
      }
      *scales_h = static_cast<uint16_t>(*scales_h | (l_h << 2 * (ib % 8)));
    }
  } else {
    *dh = F32ToF16(scales[0]);
    const float id = scales[0] != 0 ? 1 / scales[0] : 0;
    for (int j = 0; j < super; ++j) L[j] = static_cast<uint8_t>(BestIndexIq4(id * x[j]));
  }
  for (int i = 0; i < super / 32; ++i)
    for (int j = 0; j < 16; ++j)
      q4[16 * i + j] = static_cast<uint8_t>(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

// ---- Legacy 32-element types ----

void PackQ5(const uint8_t* L, uint8_t* qs, uint8_t* qh_out) {
  uint32_t qh = 0;
  for (int j = 0; j < kLegacyBlock / 2; ++j) {
    const uint8_t x0 = L[j], x1 = L[j + kLegacyBlock / 2];
    qs[j] = static_cast<uint8_t>((x0 & 0x0F) | ((x1 & 0x0F) << 4));
    qh |= ((x0 & 0x10u) >> 4) << j;
    qh |= ((x1 & 0x10u) >> 4) << (j + kLegacyBlock / 2);
  }
  std::memcpy(qh_out, &qh, 4);
}

void MinMax(const float* x, float* min, float* max) {
  *min = FLT_MAX;
  *max = -FLT_MAX;
  for (int j = 0; j < kLegacyBlock; ++j) {
    if (x[j] < *min) *min = x[j];
    if (x[j] > *max) *max = x[j];
  }
}

// Weights for the legacy types under importance weights: w·sqrt(σ² + x²), σ² over the whole row.
void LegacyWeights(const float* xb, const float* qw, float sigma2, float* weight) {
  for (int j = 0; j < kLegacyBlock; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
}

// ggml's quantize_row_q4_0_ref (base/quant.cc's QuantizeQ4_0 computes the same, but this file's
// build rules out a fused multiply-add in x·id + 8.5).
void QuantizeBlockQ4_0Ref(const float* x, BlockQ4_0* y) {
  float amax = 0, max = 0;
  for (int j = 0; j < kLegacyBlock; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  const float d = max / -8;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  y->d = F32ToF16(d);
  for (int j = 0; j < kLegacyBlock / 2; ++j) {
    const int q0 = std::min(15, static_cast<int>(x[j] * id + 8.5f));
    const int q1 = std::min(15, static_cast<int>(x[kLegacyBlock / 2 + j] * id + 8.5f));
    y->nib[j] = static_cast<uint8_t>(q0 | (q1 << 4));
  }
}

void QuantizeBlockQ4_0Weighted(const float* xb, const float* weight, BlockQ4_0* y) {
  int8_t L[kLegacyBlock];
  y->d = F32ToF16(MakeQxQuants(kLegacyBlock, 8, xb, L, 1, weight));
  for (int j = 0; j < 16; ++j) y->nib[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
}

void QuantizeBlockQ4_1Weighted(const float* xb, const float* weight, BlockQ4_1* y) {
  uint8_t L[kLegacyBlock], Laux[kLegacyBlock];
  float min;
  const float d =
      MakeQkx3Quants(kLegacyBlock, 15, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36, false);
  y->d = F32ToF16(d);
  y->m = F32ToF16(-min);
  for (int j = 0; j < 16; ++j) y->qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
}

void QuantizeBlockQ5_0Weighted(const float* xb, const float* weight, BlockQ5_0* y) {
  int8_t L[kLegacyBlock];
  y->d = F32ToF16(MakeQxQuants(kLegacyBlock, 16, xb, L, 1, weight));
  uint8_t u[kLegacyBlock];
  for (int j = 0; j < kLegacyBlock; ++j) u[j] = static_cast<uint8_t>(L[j]);
  PackQ5(u, y->qs, y->qh);
}

void QuantizeBlockQ5_1Weighted(const float* xb, const float* weight, BlockQ5_1* y) {
  uint8_t L[kLegacyBlock], Laux[kLegacyBlock];
  float min;
  const float d =
      MakeQkx3Quants(kLegacyBlock, 31, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36, false);
  y->d = F32ToF16(d);
  y->m = F32ToF16(-min);
  PackQ5(L, y->qs, y->qh);
}

// ---- K-quants with importance weights (one 256-element block; qw: its 256 weights) ----

void QuantizeBlockQ2KWeighted(const float* x, const float* qw, BlockQ2K* y) {
  uint8_t L[kQK], Laux[16], Ls[16], Lm[16];
  float mins[16], scales[16], sw[16], weight[16];
  float sumx2 = 0;
  for (int j = 0; j < kQK; ++j) sumx2 += x[j] * x[j];
  const float sigma2 = sumx2 / kQK;
  for (int j = 0; j < 16; ++j) {
    sw[j] = 0;
    for (int l = 0; l < 16; ++l)
      weight[l] = qw[16 * j + l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
    for (int l = 0; l < 16; ++l) sw[j] += weight[l];
    scales[j] = MakeQkx3Quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f,
                               36, false);
  }
  float dm = MakeQpQuants(16, 15, scales, Ls, sw);
  float mm = MakeQpQuants(16, 15, mins, Lm, sw);
  y->d = F32ToF16(dm);
  y->dmin = F32ToF16(mm);
  dm = F16ToF32(y->d);
  mm = F16ToF32(y->dmin);
  for (int j = 0; j < 16; ++j) y->scales[j] = static_cast<uint8_t>(Ls[j] | (Lm[j] << 4));
  for (int j = 0; j < 16; ++j) {
    const float d = dm * static_cast<float>(y->scales[j] & 0xF);
    if (d == 0) continue;
    const float m = mm * static_cast<float>(y->scales[j] >> 4);
    for (int ii = 0; ii < 16; ++ii) {
      const int l = NearestInt((x[16 * j + ii] + m) / d);
      L[16 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(3, l)));
    }
  }
  Pack2Bit(L, y->qs);
}

void QuantizeBlockQ3KWeighted(const float* x, const float* qw, BlockQ3K* y) {
  int8_t L[kQK];
  float scales[16], weight[16], sw[16];
  int8_t Ls[16];
  float sumx2 = 0;
  for (int j = 0; j < kQK; ++j) sumx2 += x[j] * x[j];
  const float sigma2 = 2 * sumx2 / kQK;
  for (int j = 0; j < 16; ++j) {
    for (int l = 0; l < 16; ++l)
      weight[l] = qw[16 * j + l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
    float sumw = 0;
    for (int l = 0; l < 16; ++l) sumw += weight[l];
    sw[j] = sumw;
    scales[j] = MakeQxQuants(16, 4, x + 16 * j, L + 16 * j, 1, weight);
  }
  const float d_block = MakeQxQuants(16, 32, scales, Ls, 1, sw);
  int ls[16];
  for (int j = 0; j < 16; ++j) ls[j] = Ls[j];
  PackQ3KScales(ls, y->scales);
  y->d = F32ToF16(d_block);
  FinishQ3K(x, L, y);
}

template <typename Block>
void QuantizeBlockQ45KWeighted(const float* x, const float* qw, int nmax, Block* y) {
  uint8_t L[kQK], Laux[32], Ls[8], Lm[8];
  float weights[32], sw[8], mins[8], scales[8];
  float sum_x2 = 0;
  for (int l = 0; l < kQK; ++l) sum_x2 += x[l] * x[l];
  const float sigma2 = 2 * sum_x2 / kQK;
  for (int j = 0; j < 8; ++j) {
    for (int l = 0; l < 32; ++l)
      weights[l] = qw[32 * j + l] * std::sqrt(sigma2 + x[32 * j + l] * x[32 * j + l]);
    float sumw = 0;
    for (int l = 0; l < 32; ++l) sumw += weights[l];
    sw[j] = sumw;
    scales[j] = MakeQkx3Quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f,
                               0.05f, 36, false);
  }
  const float d_block = MakeQpQuants(8, 63, scales, Ls, sw);
  const float m_block = MakeQpQuants(8, 63, mins, Lm, sw);
  for (int j = 0; j < 8; ++j)
    PackScaleMinK4(j, std::min<uint8_t>(63, Ls[j]), std::min<uint8_t>(63, Lm[j]), y->scales);
  y->d = F32ToF16(d_block);
  y->dmin = F32ToF16(m_block);
  RequantizeK4(x, y->scales, y->d, y->dmin, nmax, L);
  PackKLevels(L, y);
}

void QuantizeBlockQ6KWeighted(const float* x, const float* qw, BlockQ6K* y) {
  int8_t L[kQK];
  float scales[16];
  for (int ib = 0; ib < 16; ++ib)
    scales[ib] = MakeQxQuants(16, 32, x + 16 * ib, L + 16 * ib, 1, qw + 16 * ib);
  Q6KFromScales(x, scales, L, y);
}

// Runs `quant(x, block)` over the blocks of one row (n elements), writing each block through an
// aligned local so `dst` may have any alignment.
template <typename Block, int kElems, typename Fn>
void ForEachBlock(const float* x, uint8_t* dst, int64_t n, Fn quant) {
  for (int64_t b = 0; b < n / kElems; ++b) {
    Block block;
    quant(x + b * kElems, b * kElems, &block);
    std::memcpy(dst + b * static_cast<int64_t>(sizeof(Block)), &block, sizeof(Block));
  }
}

float RowSigma2(const float* x, int64_t n) {
  float sum_x2 = 0;
  for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  return sum_x2 / static_cast<float>(n);
}

}  // namespace

int NearestInt(float x) {
  const float val = x + 12582912.f;
  int32_t i;
  std::memcpy(&i, &val, 4);
  return (i & 0x007fffff) - 0x00400000;
}

void QuantizeBlockQ4_1(const float* x, BlockQ4_1* y) {
  float min, max;
  MinMax(x, &min, &max);
  const float d = (max - min) / 15;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  y->d = F32ToF16(d);
  y->m = F32ToF16(min);
  for (int j = 0; j < kLegacyBlock / 2; ++j) {
    const float x0 = (x[j] - min) * id;
    const float x1 = (x[kLegacyBlock / 2 + j] - min) * id;
    const int q0 = std::min(15, static_cast<int>(x0 + 0.5f));
    const int q1 = std::min(15, static_cast<int>(x1 + 0.5f));
    y->qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
  }
}

void QuantizeBlockQ5_0(const float* x, BlockQ5_0* y) {
  float amax = 0, max = 0;
  for (int j = 0; j < kLegacyBlock; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  const float d = max / -16;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  y->d = F32ToF16(d);
  uint8_t L[kLegacyBlock];
  for (int j = 0; j < kLegacyBlock; ++j)
    L[j] = static_cast<uint8_t>(std::min(31, static_cast<int>(x[j] * id + 16.5f)));
  PackQ5(L, y->qs, y->qh);
}

void QuantizeBlockQ5_1(const float* x, BlockQ5_1* y) {
  float min, max;
  MinMax(x, &min, &max);
  const float d = (max - min) / 31;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  y->d = F32ToF16(d);
  y->m = F32ToF16(min);
  uint8_t L[kLegacyBlock];
  // No clamp: ggml stores the truncation as it is (a rounding overshoot to 32 keeps its low bits).
  for (int j = 0; j < kLegacyBlock; ++j)
    L[j] = static_cast<uint8_t>(static_cast<int>((x[j] - min) * id + 0.5f));
  PackQ5(L, y->qs, y->qh);
}

void QuantizeBlockIq4Nl(const float* x, BlockIq4Nl* y) {
  uint16_t unused_h = 0;
  QuantizeIq4(kLegacyBlock, x, &y->d, y->qs, &unused_h, nullptr, nullptr);
}

void QuantizeBlockIq4Xs(const float* x, BlockIq4Xs* y) {
  QuantizeIq4(kQK, x, &y->d, y->qs, &y->scales_h, y->scales_l, nullptr);
}

void QuantizeBlockQ2K(const float* x, BlockQ2K* y) {
  uint8_t L[kQK], Laux[16];
  float weights[16], mins[16], scales[16];
  constexpr float kQ4Scale = 15.f;
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 16; ++j) {
    for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
    scales[j] = MakeQkx2Quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f,
                               15, true);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  if (max_scale > 0) {
    const float iscale = kQ4Scale / max_scale;
    for (int j = 0; j < 16; ++j)
      y->scales[j] = static_cast<uint8_t>(NearestInt(iscale * scales[j]));
    y->d = F32ToF16(max_scale / kQ4Scale);
  } else {
    for (int j = 0; j < 16; ++j) y->scales[j] = 0;
    y->d = F32ToF16(0.f);
  }
  if (max_min > 0) {
    const float iscale = kQ4Scale / max_min;
    for (int j = 0; j < 16; ++j) {
      const int l = NearestInt(iscale * mins[j]);
      y->scales[j] = static_cast<uint8_t>(y->scales[j] | (l << 4));
    }
    y->dmin = F32ToF16(max_min / kQ4Scale);
  } else {
    y->dmin = F32ToF16(0.f);
  }
  for (int j = 0; j < 16; ++j) {
    const float d = F16ToF32(y->d) * static_cast<float>(y->scales[j] & 0xF);
    if (d == 0) continue;
    const float dm = F16ToF32(y->dmin) * static_cast<float>(y->scales[j] >> 4);
    for (int ii = 0; ii < 16; ++ii) {
      const int l = NearestInt((x[16 * j + ii] + dm) / d);
      L[16 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(3, l)));
    }
  }
  Pack2Bit(L, y->qs);
}

void QuantizeBlockQ3K(const float* x, BlockQ3K* y) {
  int8_t L[kQK];
  float scales[16];
  float max_scale = 0, amax = 0;
  for (int j = 0; j < 16; ++j) {
    scales[j] = MakeQ3Quants(16, 4, x + 16 * j, L + 16 * j);
    const float scale = std::fabs(scales[j]);
    if (scale > amax) {
      amax = scale;
      max_scale = scales[j];
    }
  }
  if (max_scale != 0) {
    const float iscale = -32.f / max_scale;
    int ls[16];
    for (int j = 0; j < 16; ++j) {
      // ggml keeps the level in an int8_t: the clamp happens before the offset.
      const auto l = static_cast<int8_t>(NearestInt(iscale * scales[j]));
      ls[j] = std::max(-32, std::min(31, static_cast<int>(l))) + 32;
    }
    PackQ3KScales(ls, y->scales);
    y->d = F32ToF16(1 / iscale);
  } else {
    std::memset(y->scales, 0, 12);
    y->d = F32ToF16(0.f);
  }
  FinishQ3K(x, L, y);
}

void QuantizeBlockQ4K(const float* x, BlockQ4K* y) {
  uint8_t L[kQK], Laux[32];
  float weights[32], mins[8], scales[8];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = MakeQkx2Quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -1.f, 0.1f,
                               20, false);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  for (int j = 0; j < 8; ++j) {
    const auto ls = static_cast<uint8_t>(NearestInt(inv_scale * scales[j]));
    const auto lm = static_cast<uint8_t>(NearestInt(inv_min * mins[j]));
    PackScaleMinK4(j, std::min<uint8_t>(63, ls), std::min<uint8_t>(63, lm), y->scales);
  }
  y->d = F32ToF16(max_scale / 63.f);
  y->dmin = F32ToF16(max_min / 63.f);
  RequantizeK4(x, y->scales, y->d, y->dmin, 15, L);
  PackKLevels(L, y);
}

void QuantizeBlockQ5K(const float* x, BlockQ5K* y) {
  uint8_t L[kQK], Laux[32];
  float weights[32], mins[8], scales[8];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = MakeQkx2Quants(32, 31, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.5f, 0.1f,
                               15, false);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  for (int j = 0; j < 8; ++j) {
    const auto ls = static_cast<uint8_t>(NearestInt(inv_scale * scales[j]));
    const auto lm = static_cast<uint8_t>(NearestInt(inv_min * mins[j]));
    PackScaleMinK4(j, std::min<uint8_t>(63, ls), std::min<uint8_t>(63, lm), y->scales);
  }
  y->d = F32ToF16(max_scale / 63.f);
  y->dmin = F32ToF16(max_min / 63.f);
  RequantizeK4(x, y->scales, y->d, y->dmin, 31, L);
  PackKLevels(L, y);
}

void QuantizeBlockQ6K(const float* x, BlockQ6K* y) {
  int8_t L[kQK];
  float scales[16];
  for (int ib = 0; ib < 16; ++ib)
    scales[ib] = MakeQxQuants(16, 32, x + 16 * ib, L + 16 * ib, 1, nullptr);
  Q6KFromScales(x, scales, L, y);
}

bool GgmlQuantizable(DType t) {
  return DTypeBlock(t) > 1;
}

void QuantizeRowsLikeGgml(DType t, const float* src, void* dst_v, int64_t rows, int64_t n,
                          const float* qw) {
  if (!GgmlQuantizable(t)) Fail("cannot quantize to ", DTypeName(t), ": not a block type");
  if (n % static_cast<int64_t>(DTypeBlock(t)) != 0)
    Fail("cannot quantize rows of ", n, " values to ", DTypeName(t), ": not a multiple of ",
         DTypeBlock(t));
  auto* dst = static_cast<uint8_t*>(dst_v);
  const auto row_bytes = static_cast<int64_t>(DTypeBytes(t, static_cast<size_t>(n)));
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = src + r * n;
    uint8_t* out = dst + r * row_bytes;
    // Weighted legacy types use σ² of the whole row (ggml's quantize_row_q4_0_impl and kin).
    const float sigma2 = qw ? RowSigma2(x, n) : 0.f;
    float weight[kLegacyBlock];
    switch (t) {
      case DType::kQ8_0:
        ForEachBlock<BlockQ8_0, kLegacyBlock>(
            x, out, n,
            [](const float* xb, int64_t, BlockQ8_0* y) { QuantizeQ8_0(xb, y, kLegacyBlock); });
        break;
      case DType::kQ4_0:
        ForEachBlock<BlockQ4_0, kLegacyBlock>(x, out, n,
                                              [&](const float* xb, int64_t off, BlockQ4_0* y) {
                                                if (!qw) return QuantizeBlockQ4_0Ref(xb, y);
                                                LegacyWeights(xb, qw + off, sigma2, weight);
                                                QuantizeBlockQ4_0Weighted(xb, weight, y);
                                              });
        break;
      case DType::kQ4_1:
        ForEachBlock<BlockQ4_1, kLegacyBlock>(x, out, n,
                                              [&](const float* xb, int64_t off, BlockQ4_1* y) {
                                                if (!qw) return QuantizeBlockQ4_1(xb, y);
                                                LegacyWeights(xb, qw + off, sigma2, weight);
                                                QuantizeBlockQ4_1Weighted(xb, weight, y);
                                              });
        break;
      case DType::kQ5_0:
        ForEachBlock<BlockQ5_0, kLegacyBlock>(x, out, n,
                                              [&](const float* xb, int64_t off, BlockQ5_0* y) {
                                                if (!qw) return QuantizeBlockQ5_0(xb, y);
                                                LegacyWeights(xb, qw + off, sigma2, weight);
                                                QuantizeBlockQ5_0Weighted(xb, weight, y);
                                              });
        break;
      case DType::kQ5_1:
        ForEachBlock<BlockQ5_1, kLegacyBlock>(x, out, n,
                                              [&](const float* xb, int64_t off, BlockQ5_1* y) {
                                                if (!qw) return QuantizeBlockQ5_1(xb, y);
                                                LegacyWeights(xb, qw + off, sigma2, weight);
                                                QuantizeBlockQ5_1Weighted(xb, weight, y);
                                              });
        break;
      case DType::kIQ4_NL:
        ForEachBlock<BlockIq4Nl, kLegacyBlock>(
            x, out, n, [&](const float* xb, int64_t off, BlockIq4Nl* y) {
              uint16_t unused_h = 0;
              QuantizeIq4(kLegacyBlock, xb, &y->d, y->qs, &unused_h, nullptr,
                          qw ? qw + off : nullptr);
            });
        break;
      case DType::kIQ4_XS:
        ForEachBlock<BlockIq4Xs, kQK>(x, out, n, [&](const float* xb, int64_t off, BlockIq4Xs* y) {
          QuantizeIq4(kQK, xb, &y->d, y->qs, &y->scales_h, y->scales_l, qw ? qw + off : nullptr);
        });
        break;
      case DType::kQ2_K:
        ForEachBlock<BlockQ2K, kQK>(x, out, n, [&](const float* xb, int64_t off, BlockQ2K* y) {
          if (!qw) return QuantizeBlockQ2K(xb, y);
          QuantizeBlockQ2KWeighted(xb, qw + off, y);
        });
        break;
      case DType::kQ3_K:
        ForEachBlock<BlockQ3K, kQK>(x, out, n, [&](const float* xb, int64_t off, BlockQ3K* y) {
          if (!qw) return QuantizeBlockQ3K(xb, y);
          QuantizeBlockQ3KWeighted(xb, qw + off, y);
        });
        break;
      case DType::kQ4_K:
        ForEachBlock<BlockQ4K, kQK>(x, out, n, [&](const float* xb, int64_t off, BlockQ4K* y) {
          if (!qw) return QuantizeBlockQ4K(xb, y);
          QuantizeBlockQ45KWeighted(xb, qw + off, 15, y);
        });
        break;
      case DType::kQ5_K:
        ForEachBlock<BlockQ5K, kQK>(x, out, n, [&](const float* xb, int64_t off, BlockQ5K* y) {
          if (!qw) return QuantizeBlockQ5K(xb, y);
          QuantizeBlockQ45KWeighted(xb, qw + off, 31, y);
        });
        break;
      case DType::kQ6_K:
        ForEachBlock<BlockQ6K, kQK>(x, out, n, [&](const float* xb, int64_t off, BlockQ6K* y) {
          if (!qw) return QuantizeBlockQ6K(xb, y);
          QuantizeBlockQ6KWeighted(xb, qw + off, y);
        });
        break;
      default:
        Fail("cannot quantize to ", DTypeName(t));
    }
  }
}

}  // namespace elm
