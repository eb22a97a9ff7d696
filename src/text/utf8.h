// UTF-8 helpers shared by the tokenizer's encoder and decoders. Validation is strict (the same
// rules as Rust's String, which HF tokenizers is built on): no overlong forms, no surrogates,
// nothing above U+10FFFF.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace elm::utf8 {

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD
inline constexpr size_t kNotFound = static_cast<size_t>(-1);

// Length of the sequence announced by lead byte `b`, or 0 if `b` cannot start a sequence.
inline int SequenceLength(uint8_t b) {
  if (b < 0x80) return 1;
  if (b < 0xC2) return 0;  // continuation byte, or overlong 2-byte lead (C0, C1)
  if (b < 0xE0) return 2;
  if (b < 0xF0) return 3;
  if (b < 0xF5) return 4;
  return 0;
}

// Allowed range of the second byte given the lead byte; it is what excludes overlong 3/4-byte
// forms, UTF-16 surrogates (ED A0..BF) and code points above U+10FFFF (F4 90..).
inline bool SecondByteOk(uint8_t lead, uint8_t b) {
  switch (lead) {
    case 0xE0:
      return b >= 0xA0 && b <= 0xBF;
    case 0xED:
      return b >= 0x80 && b <= 0x9F;
    case 0xF0:
      return b >= 0x90 && b <= 0xBF;
    case 0xF4:
      return b >= 0x80 && b <= 0x8F;
    default:
      return b >= 0x80 && b <= 0xBF;
  }
}

// Appends code point `cp` (at most U+10FFFF, not a surrogate: the caller checks) as UTF-8.
inline void Append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

enum class Prefix { kComplete, kIncomplete, kInvalid };

// Classifies the bytes at the start of `s` (s non-empty): one complete character (its length in
// *len), a valid but truncated start of a character, or an invalid start (*len = 1: one bad byte).
inline Prefix ClassifyPrefix(std::string_view s, int* len) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const int n = SequenceLength(p[0]);
  *len = 1;
  if (n == 0) return Prefix::kInvalid;
  for (int i = 1; i < n; ++i) {
    if (static_cast<size_t>(i) >= s.size()) return Prefix::kIncomplete;
    const bool ok = i == 1 ? SecondByteOk(p[0], p[1]) : (p[i] & 0xC0) == 0x80;
    if (!ok) return Prefix::kInvalid;
  }
  *len = n;
  return Prefix::kComplete;
}

// Byte offset of the first byte that does not begin a valid character, or kNotFound if `s` is
// entirely valid UTF-8. ASCII is skipped eight bytes at a time: most input is ASCII.
inline size_t FindInvalid(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    if (i + 8 <= n) {
      uint64_t word;
      std::memcpy(&word, p + i, 8);
      if ((word & 0x8080808080808080ull) == 0) {
        i += 8;
        continue;
      }
    }
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    int len = 0;
    if (ClassifyPrefix(s.substr(i), &len) != Prefix::kComplete) return i;
    i += static_cast<size_t>(len);
  }
  return kNotFound;
}

inline bool IsValid(std::string_view s) {
  return FindInvalid(s) == kNotFound;
}

// Length of the (assumed valid) character starting at s[i].
inline int CharLength(std::string_view s, size_t i) {
  const int n = SequenceLength(static_cast<uint8_t>(s[i]));
  return n == 0 ? 1 : n;
}

// Code point of the (assumed valid) character of `len` bytes at `p`.
inline char32_t DecodeChar(const char* p, int len) {
  const auto* u = reinterpret_cast<const uint8_t*>(p);
  switch (len) {
    case 1:
      return u[0];
    case 2:
      return (char32_t{u[0] & 0x1Fu} << 6) | (u[1] & 0x3Fu);
    case 3:
      return (char32_t{u[0] & 0x0Fu} << 12) | (char32_t{u[1] & 0x3Fu} << 6) | (u[2] & 0x3Fu);
    default:
      return (char32_t{u[0] & 0x07u} << 18) | (char32_t{u[1] & 0x3Fu} << 12) |
             (char32_t{u[2] & 0x3Fu} << 6) | (u[3] & 0x3Fu);
  }
}

// Appends code point `cp` (a valid scalar value) to `out`.
inline void Append(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace elm::utf8
