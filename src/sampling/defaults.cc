#include "sampling/defaults.h"

#include <algorithm>
#include <random>

namespace elm {

int DefaultReplyTokens(int context) {
  return std::max(1, std::min(kDefaultMaxReplyTokens, context / 2));
}

uint64_t RandomSeed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

}  // namespace elm
