#include "train/slab_sync.h"

#include <cstdint>
#include <cstring>
#include <vector>

#include "train/distributed.h"

namespace elm {

namespace {
template <typename Vec>
uint64_t HashFloats(const Vec& v) {
  uint64_t h = 0xcbf29ce484222325ull;
  const size_t words = v.size() / 2;
  for (size_t i = 0; i < words; ++i) {
    uint64_t w;
    std::memcpy(&w, v.data() + 2 * i, sizeof w);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 29;
  }
  if (v.size() % 2 != 0) {
    uint32_t w;
    std::memcpy(&w, &v.back(), sizeof w);
    h = (h ^ w) * 0x100000001b3ull;
  }
  return h;
}
}  // namespace

void BroadcastSlab(TrainSlab& slab, bool moments) {
  Distributed::Broadcast(slab.params.data(), slab.params.size() * sizeof(float));
  if (!moments) return;
  Distributed::Broadcast(slab.m.data(), slab.m.size() * sizeof(float));
  Distributed::Broadcast(slab.v.data(), slab.v.size() * sizeof(float));
}

bool ParamsAgree(const TrainSlab& slab) {
  return Distributed::size() == 1 || Distributed::AllEqual(HashFloats(slab.params));
}

}  // namespace elm
