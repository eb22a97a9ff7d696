#include "text/nfc.h"

#include <algorithm>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "text/utf8.h"

namespace elm {

namespace {

struct NfcDecomposition {
  uint32_t cp, first, second, composes;
};
struct NfcCombiningRange {
  uint32_t first, last, ccc;
};
#include "text/nfc_tables.inc"

// Hangul syllables decompose and compose algorithmically (Unicode §3.12).
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount;
constexpr uint32_t kSCount = kLCount * kNCount;

struct Tables {
  std::unordered_map<uint32_t, const NfcDecomposition*> decomp;
  std::unordered_map<uint64_t, uint32_t> compose;
  Tables() {
    for (const auto& d : kDecompositions) {
      decomp.emplace(d.cp, &d);
      if (d.composes) compose.emplace((static_cast<uint64_t>(d.first) << 21) | d.second, d.cp);
    }
  }
};
const Tables& GetTables() {
  static const Tables t;
  return t;
}

uint32_t Ccc(uint32_t cp) {
  if (cp < 0x300) return 0;
  const auto* end = kCombiningClasses + std::size(kCombiningClasses);
  const auto* it =
      std::upper_bound(kCombiningClasses, end, cp,
                       [](uint32_t c, const NfcCombiningRange& r) { return c < r.first; });
  if (it == kCombiningClasses) return 0;
  --it;
  return cp <= it->last ? it->ccc : 0;
}

void Decompose(uint32_t cp, const Tables& t, std::vector<uint32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  auto it = t.decomp.find(cp);
  if (it == t.decomp.end()) {
    out.push_back(cp);
    return;
  }
  Decompose(it->second->first, t, out);
  if (it->second->second != 0) Decompose(it->second->second, t, out);
}

// 0 when the pair does not compose.
uint32_t Compose(uint32_t a, uint32_t b, const Tables& t) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount)
    return a + (b - kTBase);
  auto it = t.compose.find((static_cast<uint64_t>(a) << 21) | b);
  return it == t.compose.end() ? 0 : it->second;
}

bool DecodeUtf8(std::string_view s, std::vector<uint32_t>& out) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (int k = 1; k < n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) return false;
    out.push_back(cp);
    i += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

std::string NfcNormalize(std::string_view text) {
  // ASCII is always NFC: the common case costs one scan.
  if (std::all_of(text.begin(), text.end(), [](char c) { return (c & 0x80) == 0; }))
    return std::string(text);
  std::vector<uint32_t> cps;
  if (!DecodeUtf8(text, cps)) return std::string(text);
  const Tables& t = GetTables();

  // 1. Full canonical decomposition.
  std::vector<uint32_t> d;
  d.reserve(cps.size() + cps.size() / 4);
  for (uint32_t cp : cps) Decompose(cp, t, d);
  // 2. Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < d.size();) {
    if (Ccc(d[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < d.size() && Ccc(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + static_cast<std::ptrdiff_t>(i),
                     d.begin() + static_cast<std::ptrdiff_t>(j),
                     [](uint32_t a, uint32_t b) { return Ccc(a) < Ccc(b); });
    i = j;
  }
  // 3. Canonical composition (UAX #15): a character composes with the last starter unless a
  //    character of the same or higher class (or a starter) stands between them.
  if (!d.empty()) {
    size_t starter = 0, out = 1;
    uint32_t last_class = Ccc(d[0]) == 0 ? 0 : 256;
    for (size_t i = 1; i < d.size(); ++i) {
      const uint32_t ch = d[i], cls = Ccc(ch);
      const uint32_t comp = last_class == 256 ? 0 : Compose(d[starter], ch, t);
      if (comp != 0 && (last_class < cls || last_class == 0)) {
        d[starter] = comp;
        continue;
      }
      if (cls == 0) starter = out;
      last_class = cls;
      d[out++] = ch;
    }
    d.resize(out);
  }
  std::string r;
  r.reserve(text.size());
  for (uint32_t cp : d) utf8::Append(r, cp);
  return r;
}

}  // namespace elm
