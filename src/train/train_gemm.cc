#include "train/train_gemm.h"

#include "kernels/matmul.h"

namespace elm {

void TrainGemm::Forward(float* out, const float* inp, const float* w, int64_t N, int64_t C,
                        int64_t OC) {
  MatMulForward(out, inp, w, N, C, OC);
}

void TrainGemm::Backward(float* dinp, float* dw, const float* dout, const float* inp,
                         const float* w, int64_t N, int64_t C, int64_t OC) {
  MatMulBackward(dinp, dw, dout, inp, w, N, C, OC);
}

}  // namespace elm
