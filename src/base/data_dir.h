// Where elm's data files (eval sets, ...) live at run time: never a path baked in at build time, so
// an installed or copied binary finds its data the same way a build-tree binary does.
#pragma once

#include <string>
#include <string_view>

namespace elm {

// The folder of the running executable (from /proc/self/exe); empty if it cannot be read.
std::string ExecutableDir();

// Finds the data folder `sub` (e.g. "eval"): $ELM_DATA_DIR/sub when ELM_DATA_DIR is set, else
// <exe>/../share/elm/sub (an installed elm), else the first <ancestor>/data/sub above the
// executable's folder (a build tree inside the source tree). Returns "" when none exists.
std::string FindDataDir(std::string_view sub);

}  // namespace elm
