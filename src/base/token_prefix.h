// How many tokens two sequences share from the start: what a cached KV (a server slot's, a stored
// prefix, the eval scorer's session, a draft model's) can keep for a new sequence.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

namespace elm {

// The length of the common prefix of `a` and `b`, at most `limit`.
inline size_t SharedPrefixLength(std::span<const int> a, std::span<const int> b,
                                 size_t limit = SIZE_MAX) {
  const size_t n = std::min({a.size(), b.size(), limit});
  size_t len = 0;
  while (len < n && a[len] == b[len]) ++len;
  return len;
}

}  // namespace elm
