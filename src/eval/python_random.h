// CPython's `random.Random` as lm-evaluation-harness uses it to draw few-shot examples
// (docs/evaluation.md, "Few-shot"): the Mersenne Twister MT19937 seeded from a Python int the
// way `random.seed(int)` does (init_by_array over the int's 32-bit words), `getrandbits`,
// `_randbelow` (rejection sampling on bit_length bits) and `sample` (a pool of indices for small
// populations, a set of drawn indices for large ones, the same threshold as CPython 3.x). The
// same seed gives the same draws as Python, number for number.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace elm::eval {

class PyRandom {
 public:
  // random.Random(seed) for a non-negative int seed below 2**64.
  explicit PyRandom(uint64_t seed);

  // genrand_uint32: the next 32-bit output of MT19937.
  uint32_t NextU32();
  // random.getrandbits(k) for 0 <= k <= 64.
  uint64_t GetRandBits(int k);
  // random._randbelow(n) for n > 0: uniform in [0, n).
  uint64_t RandBelow(uint64_t n);
  // The indices random.sample(range(n), k) returns, in order (sample(population, k) picks
  // population[i] for each). Throws elm::Error when k > n.
  std::vector<size_t> Sample(size_t n, size_t k);

 private:
  void InitGenrand(uint32_t s);
  void InitByArray(const std::vector<uint32_t>& key);
  void Twist();

  std::array<uint32_t, 624> mt_{};
  int index_ = 624;
};

}  // namespace elm::eval
