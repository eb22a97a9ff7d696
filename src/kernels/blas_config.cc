#include "kernels/blas_config.h"

#include <cblas.h>
#include <strings.h>

#include <cstdlib>

namespace elm {

const char* OpenBlasCoreTypeOverride() {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return nullptr;
#if defined(__x86_64__)
  const char* core = openblas_get_corename();
  if (core == nullptr) return nullptr;
  const bool avx2_fallback = strcasecmp(core, "Haswell") == 0 || strcasecmp(core, "Zen") == 0;
  if (avx2_fallback && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
#endif
  return nullptr;
}

}  // namespace elm
