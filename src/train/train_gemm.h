// The matrix products of training (forward, input gradient, weight gradient) in the compute
// precision of the run: f32 through BLAS, or bf16 operands with f32 accumulation (CoreNet's
// mixed precision, `common.mixed_precision`). Master weights, activations and gradients stay f32
// either way; the bf16 path rounds each operand as it is packed (docs/numerics.md). A weight that
// a QLoRA run holds quantized (train/qlora_base.h) is dequantized into a scratch matrix first.
#pragma once

#include <cstdint>
#include <vector>

namespace elm {

class TrainGemm {
 public:
  void set_bf16(bool on) { bf16_ = on; }
  bool bf16() const { return bf16_; }

  // out[N, OC] = inp[N, C] · Wᵀ, with W: [OC, C] in PyTorch's [out, in] layout.
  void Forward(float* out, const float* inp, const float* w, int64_t N, int64_t C, int64_t OC);
  // Accumulating backward of Forward: dinp[N, C] += dout[N, OC] · W (skipped when dinp is null)
  // and dw[OC, C] += doutᵀ · inp (skipped when dw is null: a frozen weight).
  void Backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                int64_t N, int64_t C, int64_t OC);

 private:
  // `w`, or its dequantized copy in wq_ when it is a registered quantized weight (then `dw` must
  // be null: the quantized base is frozen).
  const float* Weight(const float* w, int64_t rows, int64_t cols, const float* dw);

  bool bf16_ = false;
  std::vector<float> wq_;        // the dequantized weight of the current product (QLoRA)
  std::vector<uint16_t> a_, b_;  // bf16 operand copies, packed for the kernel
};

}  // namespace elm
