#include "eval/python_random.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <unordered_set>

#include "base/error.h"

namespace elm::eval {
namespace {
constexpr int kN = 624, kM = 397;
constexpr uint32_t kMatrixA = 0x9908b0dfU, kUpper = 0x80000000U, kLower = 0x7fffffffU;
}  // namespace

PyRandom::PyRandom(uint64_t seed) {
  // random_seed(): the absolute value's 32-bit words, least significant first; 0 is one word.
  std::vector<uint32_t> key;
  do {
    key.push_back(static_cast<uint32_t>(seed & 0xffffffffU));
    seed >>= 32;
  } while (seed != 0);
  InitByArray(key);
}

void PyRandom::InitGenrand(uint32_t s) {
  mt_[0] = s;
  for (int i = 1; i < kN; ++i)
    mt_[i] = 1812433253U * (mt_[i - 1] ^ (mt_[i - 1] >> 30)) + static_cast<uint32_t>(i);
  index_ = kN;
}

void PyRandom::InitByArray(const std::vector<uint32_t>& key) {
  InitGenrand(19650218U);
  const int len = static_cast<int>(key.size());
  int i = 1, j = 0;
  for (int k = std::max(kN, len); k > 0; --k) {
    mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1664525U)) + key[j] +
             static_cast<uint32_t>(j);
    ++i;
    ++j;
    if (i >= kN) {
      mt_[0] = mt_[kN - 1];
      i = 1;
    }
    if (j >= len) j = 0;
  }
  for (int k = kN - 1; k > 0; --k) {
    mt_[i] =
        (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1566083941U)) - static_cast<uint32_t>(i);
    ++i;
    if (i >= kN) {
      mt_[0] = mt_[kN - 1];
      i = 1;
    }
  }
  mt_[0] = 0x80000000U;  // MSB is 1, assuring a non-zero initial array
  index_ = kN;
}

void PyRandom::Twist() {
  for (int k = 0; k < kN; ++k) {
    const uint32_t y = (mt_[k] & kUpper) | (mt_[(k + 1) % kN] & kLower);
    mt_[k] = mt_[(k + kM) % kN] ^ (y >> 1) ^ ((y & 1U) ? kMatrixA : 0U);
  }
  index_ = 0;
}

uint32_t PyRandom::NextU32() {
  if (index_ >= kN) Twist();
  uint32_t y = mt_[index_++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680U;
  y ^= (y << 15) & 0xefc60000U;
  y ^= y >> 18;
  return y;
}

uint64_t PyRandom::GetRandBits(int k) {
  if (k < 0 || k > 64) Fail("getrandbits(", k, "): elm supports 0..64 bits");
  if (k == 0) return 0;
  if (k <= 32) return NextU32() >> (32 - k);
  // More than one word: little-endian 32-bit words, the last one keeping its top bits.
  const uint64_t low = NextU32();
  const uint64_t high = NextU32() >> (64 - k);
  return low | (high << 32);
}

uint64_t PyRandom::RandBelow(uint64_t n) {
  if (n == 0) Fail("randbelow(0)");
  const int k = std::bit_width(n);  // n.bit_length()
  uint64_t r = GetRandBits(k);
  while (r >= n) r = GetRandBits(k);
  return r;
}

std::vector<size_t> PyRandom::Sample(size_t n, size_t k) {
  if (k > n) Fail("cannot sample ", k, " of ", n, " few-shot docs (sample larger than population)");
  std::vector<size_t> result(k);
  size_t setsize = 21;  // CPython: size of a small set minus size of an empty list
  if (k > 5)
    setsize += static_cast<size_t>(
        std::pow(4.0, std::ceil(std::log(static_cast<double>(k * 3)) / std::log(4.0))));
  if (n <= setsize) {
    std::vector<size_t> pool(n);
    for (size_t i = 0; i < n; ++i) pool[i] = i;
    for (size_t i = 0; i < k; ++i) {
      const size_t j = static_cast<size_t>(RandBelow(n - i));
      result[i] = pool[j];
      pool[j] = pool[n - i - 1];
    }
  } else {
    std::unordered_set<size_t> selected;
    for (size_t i = 0; i < k; ++i) {
      size_t j = static_cast<size_t>(RandBelow(n));
      while (selected.count(j)) j = static_cast<size_t>(RandBelow(n));
      selected.insert(j);
      result[i] = j;
    }
  }
  return result;
}

}  // namespace elm::eval
