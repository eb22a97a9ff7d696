#include "version.h"

#include "kernels/blas.h"
#include "kernels/cpu_kernels.h"

#ifndef ELM_VERSION
#define ELM_VERSION "unknown"
#endif
#ifndef ELM_GIT_COMMIT
#define ELM_GIT_COMMIT "unknown"
#endif

namespace elm::cli {

std::string VersionText() {
  return std::string("elm ") + ELM_VERSION + "\ncommit: " + ELM_GIT_COMMIT +
         "\nkernels: " + BestKernels().name + "\nBLAS: " + BlasDescription();
}

}  // namespace elm::cli
