// Progress of a long write (a model conversion): bytes written so far of the total, reported by
// the writers after each tensor. The caller decides how to show it (elm convert draws a bar on a
// terminal or with --verbose).
#pragma once

#include <cstdint>
#include <functional>

namespace elm {

using WriteProgressFn = std::function<void(int64_t done_bytes, int64_t total_bytes)>;

}  // namespace elm
