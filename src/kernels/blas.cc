#include "kernels/blas.h"

#include <dlfcn.h>
#include <strings.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include "base/error.h"

#ifndef ELM_OPENBLAS_LIBRARY
#define ELM_OPENBLAS_LIBRARY "libopenblas.so.0"
#endif

namespace elm {
namespace {

using SgemmFn = decltype(&cblas_sgemm);

void* Open() {
  void* lib = dlopen(ELM_OPENBLAS_LIBRARY, RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) lib = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr)
    Fail("cannot load OpenBLAS (", ELM_OPENBLAS_LIBRARY, "): ", dlerror(),
         "; f32 training needs it (Debian: apt install libopenblas0-openmp)");
  return lib;
}

// The kernels OpenBLAS picked for this CPU ("" if it cannot say).
std::string CoreName(void* lib) {
  using CoreNameFn = char* (*)();
  auto fn = reinterpret_cast<CoreNameFn>(dlsym(lib, "openblas_get_corename"));
  const char* name = fn != nullptr ? fn() : nullptr;
  return name != nullptr ? name : "";
}

SgemmFn LoadSgemm() {
  static SgemmFn fn = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    void* lib = Open();
    // OpenBLAS reads OPENBLAS_CORETYPE only when it is loaded: load it again with the override.
    if (const char* core = OpenBlasCoreTypeOverride(CoreName(lib).c_str())) {
      dlclose(lib);
      setenv("OPENBLAS_CORETYPE", core, 1);
      lib = Open();
    }
    fn = reinterpret_cast<SgemmFn>(dlsym(lib, "cblas_sgemm"));
    if (fn == nullptr) Fail("OpenBLAS (", ELM_OPENBLAS_LIBRARY, ") has no cblas_sgemm");
  });
  return fn;
}

}  // namespace

void Sgemm(CBLAS_ORDER order, CBLAS_TRANSPOSE trans_a, CBLAS_TRANSPOSE trans_b, int M, int N, int K,
           float alpha, const float* A, int lda, const float* B, int ldb, float beta, float* C,
           int ldc) {
  LoadSgemm()(order, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

const char* BlasDescription() {
  return "OpenBLAS (" ELM_OPENBLAS_LIBRARY ", loaded on first use)";
}

const char* OpenBlasCoreTypeOverride(const char* picked) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return nullptr;
#if defined(__x86_64__)
  const bool avx2_fallback = strcasecmp(picked, "Haswell") == 0 || strcasecmp(picked, "Zen") == 0;
  if (avx2_fallback && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
#else
  (void)picked;
#endif
  return nullptr;
}

}  // namespace elm
