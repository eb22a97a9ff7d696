// Quantization into llama.cpp's block formats (base/kquant.h, base/quant.h), reproducing ggml's
// quantizers bit for bit so that elm writes the same bytes as llama-quantize: without importance
// weights the reference search of each type (ggml's `quantize_row_*_ref`: Q4_1, Q5_0, Q5_1 by
// min/max, the K-quants by their per-sub-block scale search, IQ4_NL and IQ4_XS by the
// non-linear-level search), with them the weighted search llama-quantize runs for `--imatrix`.
// The same float operations in the same order, and round-half-even `NearestInt` as ggml's
// nearest_int; this file's .cc is compiled without FP contraction (CMakeLists.txt).
// docs/formats.md, "Writing llama.cpp's quantization types", describes the searches.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/dtype.h"
#include "base/kquant.h"

namespace elm {

// ggml's nearest_int: round half to even via the 1.5·2^23 trick (|x| < 2^22).
int NearestInt(float x);

// Whether QuantizeRowsLikeGgml writes type `t`: every block type (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
// IQ4_NL, Q2_K … Q6_K, IQ4_XS).
bool GgmlQuantizable(DType t);

// Quantizes `rows` rows of `n_per_row` floats (a multiple of the block size) into type `t` at
// `dst` (any alignment, rows back to back), as ggml_quantize_chunk does. `importance` is null
// (the reference quantizers) or n_per_row non-negative weights, one per column (an importance
// matrix row: llama.cpp's imatrix). Q8_0 ignores the weights, as ggml does.
void QuantizeRowsLikeGgml(DType t, const float* src, void* dst, int64_t rows, int64_t n_per_row,
                          const float* importance);

// Single blocks, reference search (no importance weights): 32 floats for the legacy types and
// IQ4_NL, 256 for the K-quants and IQ4_XS.
void QuantizeBlockQ4_1(const float* x, BlockQ4_1* y);
void QuantizeBlockQ5_0(const float* x, BlockQ5_0* y);
void QuantizeBlockQ5_1(const float* x, BlockQ5_1* y);
void QuantizeBlockIq4Nl(const float* x, BlockIq4Nl* y);
void QuantizeBlockQ2K(const float* x, BlockQ2K* y);
void QuantizeBlockQ3K(const float* x, BlockQ3K* y);
void QuantizeBlockQ4K(const float* x, BlockQ4K* y);
void QuantizeBlockQ5K(const float* x, BlockQ5K* y);
void QuantizeBlockQ6K(const float* x, BlockQ6K* y);
void QuantizeBlockIq4Xs(const float* x, BlockIq4Xs* y);

}  // namespace elm
