#include "kernels/matmul_fast.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "base/simd_clones.h"
#include "kernels/kquant_kernels.h"

namespace elm {
namespace {

constexpr int64_t kPrefillRows = 4;  // from this many activation rows on, prefill kernels
constexpr int64_t kPanel = 16;       // weight rows per work item (a multiple of the 4-row tile)
constexpr int64_t kBf16Panel = 24;   // the same for bf16 prefill (a multiple of the 6-row tile)

// Scratch that lives with the calling thread, so steady-state decoding allocates nothing.
template <typename T>
T* Scratch(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// The same, 64-byte aligned: every bf16 weight panel the prefill tiles read (converted F16 and
// dequantized panels, copies of misaligned BF16 ones), so no load splits a cache line.
template <typename T>
T* AlignedScratch(std::vector<T>& v, size_t n) {
  T* p = Scratch(v, n + 64 / sizeof(T));
  const auto a = reinterpret_cast<uintptr_t>(p);
  return reinterpret_cast<T*>((a + 63) & ~uintptr_t{63});
}

// The calling thread's activations rounded to bf16 (one buffer for every bf16 path).
std::vector<uint16_t>& ActivationsBf16() {
  thread_local std::vector<uint16_t> v;
  return v;
}

// Splits rows [0, N) into panels and runs fn(r0, nr) for each, in parallel.
template <typename Fn>
void ForPanels(int64_t N, int64_t panel, const Fn& fn) {
  const int64_t n_panels = (N + panel - 1) / panel;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < n_panels; ++p) {
    const int64_t r0 = p * panel;
    fn(r0, std::min(panel, N - r0));
  }
}

// Packed Q8_0/Q4_0 weights: activations quantized to Q8_0 (with block sums), one integer kernel
// for decode and prefill. Panels are whole 16-row groups.
void MatMulPacked(const CpuKernels& k, float* y, const float* x, int64_t T, const MatRef& w) {
  const int64_t N = w.rows, K = w.cols, nb = K / kQBlock;
  thread_local std::vector<BlockQ8_0> xq8;
  thread_local std::vector<int32_t> xsum;
  BlockQ8_0* xq = Scratch(xq8, static_cast<size_t>(T * nb));
  int32_t* xs = Scratch(xsum, static_cast<size_t>(T * nb));
  if (T == 1) {
    k.quantize_q8_0(x, xq, K);
  } else {
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < T; ++t) k.quantize_q8_0(x + t * K, xq + t * nb, K);
  }
  BlockSumsQ8_0(xq, xs, T * nb);
  const int threads = omp_get_max_threads();
  const int64_t groups = N / kPackRows;
  // Decode: one even share of the groups per thread; prefill: 2 groups per work item.
  const int64_t per = T < kPrefillRows ? (groups + threads - 1) / threads : 2;
  ForPanels(N, per * kPackRows, [&](int64_t r0, int64_t nr) {
    const int64_t g0 = r0 / kPackRows;
    if (w.dtype == DType::kQ8_0)
      k.gemm_q8_0x16(y + r0, N, xq, xs, T, static_cast<const BlockQ8_0x16*>(w.data) + g0 * nb, nr,
                     K);
    else
      k.gemm_q4_0x16(y + r0, N, xq, xs, T, static_cast<const BlockQ4_0x16*>(w.data) + g0 * nb, nr,
                     K);
  });
}

// Decode of Q4_K, Q5_K, Q6_K and IQ4_XS (llama.cpp's GGUF types, base/kquant.h) on their own
// kernels (kquant_kernels.h) with Q8_K activations, as llama.cpp's does; prefill of Q4_K, Q5_K and
// Q6_K likewise where the table has prefill kernels (MatMulKquantPrefill below). Decoding the
// other types goes through MatMulWidened (rows dequantized to f32 exactly as ggml does, then the
// f32 kernel), the rest of prefill through MatMulDequantBf16 (docs/numerics.md).
bool HasKquantKernel(const MatRef& w) {
  const bool type = w.dtype == DType::kQ4_K || w.dtype == DType::kQ5_K || w.dtype == DType::kQ6_K ||
                    w.dtype == DType::kIQ4_XS;
  return type && w.cols % kQK == 0;
}

void MatMulKquant(const CpuKernels& k, float* y, const float* x, int64_t T, const MatRef& w) {
  const int64_t N = w.rows, K = w.cols;
  const int threads = omp_get_max_threads();
  const KquantKernels& kk =
      std::string_view(k.name) == "scalar" ? ScalarKquantKernels() : BestKquantKernels();
  const int64_t nb = K / kQK;
  thread_local std::vector<BlockQ8K> xq8k;
  BlockQ8K* xq = Scratch(xq8k, static_cast<size_t>(T * nb));
  for (int64_t t = 0; t < T; ++t) kk.quantize_q8k(x + t * K, xq + t * nb, static_cast<size_t>(K));
  // One even share of the rows per thread (a multiple of 4).
  const int64_t share = std::max<int64_t>(4, (N + 4 * threads - 1) / (4 * threads) * 4);
  ForPanels(N, share, [&](int64_t r0, int64_t nr) {
    const uint8_t* wr = w.row(r0);
    switch (w.dtype) {
      case DType::kQ4_K:
        kk.gemm_q4_k(y + r0, N, xq, T, reinterpret_cast<const BlockQ4K*>(wr), nr, K);
        break;
      case DType::kQ5_K:
        kk.gemm_q5_k(y + r0, N, xq, T, reinterpret_cast<const BlockQ5K*>(wr), nr, K);
        break;
      case DType::kQ6_K:
        kk.gemm_q6_k(y + r0, N, xq, T, reinterpret_cast<const BlockQ6K*>(wr), nr, K);
        break;
      default:
        kk.gemm_iq4_xs(y + r0, N, xq, T, reinterpret_cast<const BlockIq4Xs*>(wr), nr, K);
        break;
    }
  });
}

// Prefill of Q4_K, Q5_K and Q6_K on the table's integer prefill kernel (kquant_kernels.h):
// activations quantized to Q8_K once (rows in parallel), then 16-row groups in parallel, each
// unpacked once per call and multiplied by every activation row. False where there is none.
bool MatMulKquantPrefill(const CpuKernels& k, float* y, const float* x, int64_t T,
                         const MatRef& w) {
  if (std::string_view(k.name) == "scalar" || w.cols % kQK != 0) return false;
  const KquantKernels& kk = BestKquantKernels();
  const bool have = (w.dtype == DType::kQ4_K && kk.prefill_q4_k) ||
                    (w.dtype == DType::kQ5_K && kk.prefill_q5_k) ||
                    (w.dtype == DType::kQ6_K && kk.prefill_q6_k);
  if (!have) return false;
  const int64_t N = w.rows, K = w.cols, nb = K / kQK;
  thread_local std::vector<BlockQ8K> xq8k;
  BlockQ8K* xq = Scratch(xq8k, static_cast<size_t>(T * nb));
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) kk.quantize_q8k(x + t * K, xq + t * nb, static_cast<size_t>(K));
  // One even share of the 16-row groups per thread, so a thread's kernel call can fetch its next
  // group ahead.
  const int64_t groups = (N + kPanel - 1) / kPanel, threads = omp_get_max_threads();
  ForPanels(N, (groups + threads - 1) / threads * kPanel, [&](int64_t r0, int64_t nr) {
    const uint8_t* wr = w.row(r0);
    switch (w.dtype) {
      case DType::kQ4_K:
        kk.prefill_q4_k(y + r0, N, xq, T, reinterpret_cast<const BlockQ4K*>(wr), nr, K);
        break;
      case DType::kQ5_K:
        kk.prefill_q5_k(y + r0, N, xq, T, reinterpret_cast<const BlockQ5K*>(wr), nr, K);
        break;
      default:
        kk.prefill_q6_k(y + r0, N, xq, T, reinterpret_cast<const BlockQ6K*>(wr), nr, K);
        break;
    }
  });
  return true;
}

// 16-row group g of a packed Q8_0/Q4_0 matrix widened to f32 rows (out: 16 · cols floats), reading
// the group's blocks in order (a row alone would read every block of its group: 16× the traffic).
ELM_CLONES void WidenPackedGroup(const MatRef& w, int64_t g, float* out) {
  const int64_t K = w.cols, nb = K / kQBlock;
  float d[kPackRows];
  for (int64_t b = 0; b < nb; ++b) {
    float* o = out + b * kQBlock;
    if (w.dtype == DType::kQ8_0) {
      const BlockQ8_0x16& blk = static_cast<const BlockQ8_0x16*>(w.data)[g * nb + b];
      for (int j = 0; j < kPackRows; ++j) d[j] = F16ToF32(blk.d[j]);
      for (int s = 0; s < kQBlock / 4; ++s)
        for (int j = 0; j < kPackRows; ++j)
          for (int i = 0; i < 4; ++i)
            o[j * K + 4 * s + i] = d[j] * static_cast<float>(blk.q[s][j][i] - 128);
    } else {
      const BlockQ4_0x16& blk = static_cast<const BlockQ4_0x16*>(w.data)[g * nb + b];
      for (int j = 0; j < kPackRows; ++j) d[j] = F16ToF32(blk.d[j]);
      for (int s = 0; s < kQBlock / 8; ++s)
        for (int j = 0; j < kPackRows; ++j)
          for (int i = 0; i < 4; ++i) {
            const int v = blk.nib[s][j][i];
            o[j * K + 4 * s + i] = d[j] * static_cast<float>((v & 15) - 8);
            o[j * K + 16 + 4 * s + i] = d[j] * static_cast<float>((v >> 4) - 8);
          }
    }
  }
}

ELM_CLONES void WidenBf16(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t bits = static_cast<uint32_t>(x[i]) << 16;
    std::memcpy(y + i, &bits, 4);
  }
}

// Rows [r0, r0 + n) of `w` widened exactly to f32 into `out` (n · K floats; for a packed matrix
// r0 and n are multiples of 16).
void WidenRows(const CpuKernels& k, const MatRef& w, int64_t r0, int64_t n, float* out) {
  const int64_t K = w.cols;
  if (w.dtype == DType::kF16) {
    k.f16_to_f32(reinterpret_cast<const uint16_t*>(w.row(r0)), out, n * K);
  } else if (w.dtype == DType::kBF16) {
    WidenBf16(reinterpret_cast<const uint16_t*>(w.row(r0)), out, n * K);
  } else if (w.packed) {
    for (int64_t g = 0; g < n / kPackRows; ++g)
      WidenPackedGroup(w, r0 / kPackRows + g, out + g * kPackRows * K);
  } else {
    ToF32(w.dtype, w.row(r0), out, static_cast<size_t>(n * K));
  }
}

// --exact for BF16 and quantized weights (docs/numerics.md): each panel of weight rows is widened
// to f32 once (decoding: a few rows at a time, so they stay in L1) and multiplied by the f32
// activations with the f32 kernels.
void MatMulWidened(const CpuKernels& k, float* y, const float* x, int64_t T, const MatRef& w,
                   int64_t panel) {
  const int64_t N = w.rows, K = w.cols;
  // Decoding widens 4 rows at a time (they stay in L1); prefill a whole panel, reused by every
  // activation row. A packed matrix is widened a whole 16-row group at a time: a row alone would
  // read every block of its group (16× the memory traffic).
  const int64_t step = w.packed ? kPackRows : T < kPrefillRows ? 4 : kPanel;
  const int64_t per = (std::max(panel, step) + step - 1) / step * step;
  ForPanels(N, per, [&](int64_t r0, int64_t nr) {
    thread_local std::vector<float> wf;
    const int64_t rows = std::min(step, nr);
    float* f = AlignedScratch(wf, static_cast<size_t>(rows * K));
    for (int64_t r = r0; r < r0 + nr; r += step) {
      const int64_t n = std::min(step, r0 + nr - r);
      WidenRows(k, w, r, n, f);
      k.gemm_f32(y + r, N, x, T, f, n, K);
    }
  });
}

// Prefill of unpacked quantized weights (Q8_0, Q4_0 and llama.cpp's types, base/kquant.h): each
// 16-row panel is dequantized once exactly as ggml does (f32), rounded to bf16 and multiplied by
// every activation row (rounded to bf16 once) with the bf16 GEMM, so the dequantization is paid
// once per panel per batch, not per activation row (docs/numerics.md, docs/performance.md).
void MatMulDequantBf16(const CpuKernels& k, float* y, const float* x, int64_t T, const MatRef& w) {
  const int64_t N = w.rows, K = w.cols;
  uint16_t* xb = Scratch(ActivationsBf16(), static_cast<size_t>(T * K));
  k.f32_to_bf16(x, xb, T * K);
  ForPanels(N, kBf16Panel, [&](int64_t r0, int64_t nr) {
    thread_local std::vector<float> wf;
    thread_local std::vector<uint16_t> wb;
    // A row at a time through f32 (one row stays in L1; a whole f32 panel would add ~0.5 MB per
    // thread to the peak resident memory, docs/performance.md).
    float* f = Scratch(wf, static_cast<size_t>(K));
    uint16_t* b = AlignedScratch(wb, static_cast<size_t>(nr * K));
    for (int64_t i = 0; i < nr; ++i) {
      ToF32(w.dtype, w.row(r0 + i), f, static_cast<size_t>(K));
      k.f32_to_bf16(f, b + i * K, K);
    }
    k.gemm_bf16(y + r0, N, xb, T, b, nr, K);
  });
}

}  // namespace

void MatMulWith(const CpuKernels& k, float* y, const float* x, int64_t T, const MatRef& w,
                bool exact) {
  const int64_t N = w.rows, K = w.cols;
  // Decode: one panel per thread keeps the work even; prefill: small panels for cache reuse.
  const int threads = omp_get_max_threads();
  const int64_t decode_panel = std::max<int64_t>(4, ((N + threads * 4 - 1) / (threads * 4)) * 4);
  const int64_t panel = T < kPrefillRows ? std::min<int64_t>(decode_panel, 256) : kPanel;
  std::vector<uint16_t>& xb16 = ActivationsBf16();
  thread_local std::vector<BlockQ8_0> xq8;
  switch (w.dtype) {
    case DType::kF32:
      ForPanels(N, panel, [&](int64_t r0, int64_t nr) {
        k.gemm_f32(y + r0, N, x, T, reinterpret_cast<const float*>(w.row(r0)), nr, K);
      });
      return;
    case DType::kF16: {
      // F16 keeps its 11 bits on every path: widened exactly in registers, f32 FMA with the f32
      // activations, so the fast path is already exact (docs/numerics.md; measured against
      // bf16-rounded or hi/lo-split bf16 panels in docs/performance.md).
      ForPanels(N, panel, [&](int64_t r0, int64_t nr) {
        k.gemm_f16(y + r0, N, x, T, reinterpret_cast<const uint16_t*>(w.row(r0)), nr, K);
      });
      return;
    }
    case DType::kBF16: {
      if (exact) return MatMulWidened(k, y, x, T, w, panel);
      uint16_t* xb = Scratch(xb16, static_cast<size_t>(T * K));
      k.f32_to_bf16(x, xb, T * K);
      ForPanels(N, T < kPrefillRows ? panel : kBf16Panel, [&](int64_t r0, int64_t nr) {
        const auto* wp = reinterpret_cast<const uint16_t*>(w.row(r0));
        if (T >= kPrefillRows && reinterpret_cast<uintptr_t>(wp) % 64 != 0) {
          // Mapped safetensors data is only 8-byte aligned: the panel is copied once, so the
          // tiles' loads of it (one per activation block) don't split cache lines.
          thread_local std::vector<uint16_t> wb;
          uint16_t* b = AlignedScratch(wb, static_cast<size_t>(nr * K));
          std::copy(wp, wp + nr * K, b);
          wp = b;
        }
        k.gemm_bf16(y + r0, N, xb, T, wp, nr, K);
      });
      return;
    }
    case DType::kQ8_0:
    case DType::kQ4_0: {
      if (exact) return MatMulWidened(k, y, x, T, w, panel);
      if (w.packed) {
        MatMulPacked(k.gemm_q8_0x16 ? k : ScalarKernels(), y, x, T, w);
        return;
      }
      if (T < kPrefillRows) {
        const int64_t nb = K / kQBlock;
        BlockQ8_0* xq = Scratch(xq8, static_cast<size_t>(T * nb));
        for (int64_t t = 0; t < T; ++t) k.quantize_q8_0(x + t * K, xq + t * nb, K);
        ForPanels(N, panel, [&](int64_t r0, int64_t nr) {
          if (w.dtype == DType::kQ8_0)
            k.gemm_q8_0(y + r0, N, xq, T, reinterpret_cast<const BlockQ8_0*>(w.row(r0)), nr, K);
          else
            k.gemm_q4_0(y + r0, N, xq, T, reinterpret_cast<const BlockQ4_0*>(w.row(r0)), nr, K);
        });
        return;
      }
      return MatMulDequantBf16(k, y, x, T, w);
    }
    default:  // llama.cpp's other types (base/kquant.h)
      if (exact) return MatMulWidened(k, y, x, T, w, panel);
      if (T < kPrefillRows && HasKquantKernel(w)) return MatMulKquant(k, y, x, T, w);
      if (T >= kPrefillRows && MatMulKquantPrefill(k, y, x, T, w)) return;
      if (T >= kPrefillRows) return MatMulDequantBf16(k, y, x, T, w);
      return MatMulWidened(k, y, x, T, w, panel);
  }
}

void MatMulFast(float* y, const float* x, int64_t T, const MatRef& w, bool exact) {
  if (DTypeBlock(w.dtype) != 1 && w.cols % kQBlock != 0) {
    MatMul(y, x, T, w);  // quantized rows must hold whole blocks; never the case for OpenELM
    return;
  }
  MatMulWith(BestKernels(), y, x, T, w, exact);
}

}  // namespace elm
