// AVX2 + FMA + F16C tier. Not written yet: CPUs without AVX-512 BF16/VNNI use the scalar table
// (see docs/performance.md). Kept as its own file so the tier slots in without touching callers.
#include "kernels/cpu_kernels.h"

namespace elm {
const CpuKernels* Avx2Kernels() { return nullptr; }
}  // namespace elm
