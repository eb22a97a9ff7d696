// The fuzz build leaves out the SIMD kernel tables (src/kernels/x86, src/kernels/arm): parsing
// does not need them, and their CPU-feature builtins are compiler-specific. BestKernels() then
// picks the scalar table, and BestKquantKernels() the scalar K-quant table.
#include "kernels/cpu_kernels.h"
#include "kernels/kquant_kernels.h"

namespace elm {
const CpuKernels* Avx512Kernels() {
  return nullptr;
}
const CpuKernels* Avx2Kernels() {
  return nullptr;
}
const CpuKernels* NeonKernels() {
  return nullptr;
}
const KquantKernels* Avx2KquantKernels() {
  return nullptr;
}
const KquantKernels* Avx512KquantKernels() {
  return nullptr;
}
const KquantKernels* NeonKquantKernels() {
  return nullptr;
}
}  // namespace elm
