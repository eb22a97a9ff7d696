// What `elm --version` prints (README.md, "Flags"): the version, the git commit it was built from
// (recorded when CMake configured the build; "unknown" outside a git checkout), the instruction
// set the kernels dispatch to on this CPU (kernels/cpu_kernels.h) and the BLAS (kernels/blas.h,
// loaded on first use, so not loaded here).
#pragma once

#include <string>

namespace elm::cli {

std::string VersionText();

}  // namespace elm::cli
