// Seedable pseudo-random generator used by the samplers.
//
// Why not <random>: std::mt19937_64 is portable, but the distributions on top of it
// (uniform_real_distribution & co.) are implementation-defined, so the same seed would sample
// different tokens under libstdc++ and libc++. Here every step is specified bit-for-bit, which
// makes a seed reproduce the same generation on every platform and compiler.
//
// Algorithm: xoshiro256** (Blackman & Vigna, 2018) for the stream, its state filled by
// SplitMix64 from the 64-bit seed (the seeding procedure its authors recommend, and the reason
// any seed, including 0, gives a well-mixed non-zero state).
#pragma once

#include <bit>
#include <cstdint>

namespace elm {

// One step of SplitMix64: advances *state and returns a well-mixed 64-bit value.
inline uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) { Seed(seed); }

  // Restarts the stream: after Seed(s) the outputs are identical to those of Rng(s).
  void Seed(uint64_t seed) {
    uint64_t sm = seed;
    for (uint64_t& word : s_) word = SplitMix64(sm);
  }

  // Uniform 64-bit value.
  uint64_t NextU64() {
    const uint64_t result = std::rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = std::rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, 1) with 24 random bits: every value is an exact multiple of 2^-24, so the
  // result can never round up to 1.0f (which (float)NextDouble() could).
  float NextFloat() { return static_cast<float>(NextU64() >> 40) * 0x1.0p-24f; }

  // Uniform in [0, 1) with 53 random bits. The sampler draws with this one: with 32000-token
  // vocabularies, 24 bits would quantize tail probabilities noticeably.
  double NextDouble() { return static_cast<double>(NextU64() >> 11) * 0x1.0p-53; }

 private:
  uint64_t s_[4];
};

}  // namespace elm
