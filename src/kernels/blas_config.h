// Choices elm makes about the BLAS library it links (OpenBLAS), which reads its settings from the
// environment once, when it is loaded.
#pragma once

namespace elm {

// The OPENBLAS_CORETYPE elm should run with, or nullptr to keep OpenBLAS's own choice (always
// nullptr when the user set OPENBLAS_CORETYPE). OpenBLAS 0.3.21 (Debian 12) does not recognise
// AMD Zen 4/5 and falls back to its AVX2 "Haswell" kernels there; its "SkylakeX" AVX-512 kernels
// need only AVX-512 F/BW/DQ/VL, and on a Zen 5 they make f32 training ~1.4x faster
// (docs/performance.md).
const char* OpenBlasCoreTypeOverride();

}  // namespace elm
