// HF's Llama-2 tokenizer has no pre-tokenizer: the whole normalized text ("▁Hello▁world") is one
// BPE word. Running the merge loop on megabytes at once is correct (bpe::Merge is O(n log n)) but
// slow, so when the loader proved it exact (TokenizerData::split_words) the text is cut into
// words that no merge can cross:
//   - in front of "▁", unless the previous character could merge with it (for Llama-2: unless it
//     is "▁" too, since "▁▁" is a token), and
//   - around ASCII characters that become byte-fallback tokens ("\n", "\t", ...), which no merge
//     involves.
// Each word then merges exactly as it would inside the whole text, so the concatenation of the
// words' ids equals HF's output. Real text repeats words constantly, so each call memoizes
// word -> ids; only new words run the merge loop.
#include "tokenizer/encoder.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "text/utf8.h"

namespace elm::tokenizer_internal {

namespace {

uint64_t Load8(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
uint64_t Load4(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

constexpr uint64_t kOnes = 0x0101010101010101ull;
constexpr uint64_t kHighs = 0x8080808080808080ull;

// The high bit of each byte of x that equals `b`, possibly also of some bytes after such a byte
// (borrows), never of bytes before the first match.
uint64_t BytesEqual(uint64_t x, uint8_t b) {
  const uint64_t y = x ^ (kOnes * b);
  return (y - kOnes) & ~y & kHighs;
}
// The same for bytes below `n` (n <= 128).
uint64_t BytesBelow(uint64_t x, uint8_t n) {
  return (x - kOnes * n) & ~x & kHighs;
}
// Exactly the high bit of each byte equal to `b`.
uint64_t BytesEqualExact(uint64_t x, uint8_t b) {
  const uint64_t y = x ^ (kOnes * b);
  return ~(((y & ~kHighs) + ~kHighs) | y) & kHighs;
}

// Appends `text` with every occurrence of the one-byte `pattern` replaced by `content` (Llama's
// " " -> "▁"). Eight bytes at a time: each block is stored whole (the buffer has slack) and only
// the bytes up to the first pattern byte are kept, so a text is one pass with no calls.
void AppendReplacingByte(std::string_view text, char pattern, std::string_view content,
                         std::string* out) {
  const auto pat = static_cast<uint8_t>(pattern);
  const char* src = text.data();
  const char* const end = src + text.size();
  size_t hits = 0;
  for (const char* q = src; q < end; q += 8) {
    if (end - q >= 8) {
      // Each flag is one byte's high bit: shift to 0/1 per byte and add the bytes up.
      hits += static_cast<size_t>(((BytesEqualExact(Load8(q), pat) >> 7) * kOnes) >> 56);
    } else {
      hits += static_cast<size_t>(std::count(q, end, pattern));
    }
  }
  const size_t start = out->size();
  const size_t size = start + text.size() + hits * content.size() - hits;
  if (content.size() > 8 || std::endian::native != std::endian::little) {
    out->reserve(size);
    for (; src != end; ++src) {
      if (*src == pattern) {
        out->append(content);
      } else {
        out->push_back(*src);
      }
    }
    return;
  }
  uint64_t word = 0;
  std::memcpy(&word, content.data(), content.size());
  const size_t step = content.size();
  out->resize(size + 8);
  char* dst = out->data() + start;
  while (end - src >= 8) {
    const uint64_t block = Load8(src);
    std::memcpy(dst, &block, 8);
    const uint64_t hit = BytesEqual(block, pat);
    if (hit == 0) {
      src += 8;
      dst += 8;
      continue;
    }
    const auto k = static_cast<size_t>(std::countr_zero(hit) / 8);  // the first match is exact
    dst += k;
    std::memcpy(dst, &word, 8);
    dst += step;
    src += k + 1;
  }
  for (; src != end; ++src) {
    if (*src == pattern) {
      std::memcpy(dst, &word, 8);
      dst += step;
    } else {
      *dst++ = *src;
    }
  }
  out->resize(size);
}

// Appends `text` with every occurrence of `pattern` (left to right, non-overlapping) replaced.
void AppendReplacing(std::string_view text, std::string_view pattern, std::string_view content,
                     std::string* out) {
  if (pattern.size() == 1) return AppendReplacingByte(text, pattern[0], content, out);
  size_t pos = 0;
  for (size_t hit; (hit = text.find(pattern, pos)) != std::string_view::npos;) {
    out->append(text.substr(pos, hit - pos)).append(content);
    pos = hit + pattern.size();
  }
  out->append(text.substr(pos));
}

}  // namespace

std::string Normalize(const TokenizerData& d, std::string_view text) {
  // The text is `head + body`: prepended text is kept apart until a Replace step, which writes
  // head and body into one new string. A one-byte pattern cannot straddle the two, so Llama-2's
  // [Prepend("▁"), Replace(" " -> "▁")] is a single pass over the text.
  std::string head, storage, scratch;
  std::string_view body = text;
  for (const NormalizerOp& op : d.normalizer) {
    if (op.kind == NormalizerOp::Kind::kPrepend) {
      if (!head.empty() || !body.empty()) head.insert(0, op.content);  // HF: "" stays ""
      continue;
    }
    scratch.clear();
    scratch.reserve(head.size() + body.size() + body.size() / 4 * op.content.size());
    if (op.pattern.size() == 1) {
      AppendReplacing(head, op.pattern, op.content, &scratch);
      AppendReplacing(body, op.pattern, op.content, &scratch);
    } else {
      AppendReplacing(head + std::string(body), op.pattern, op.content, &scratch);
    }
    head.clear();
    storage.swap(scratch);
    body = storage;
  }
  if (head.empty()) return body.data() == storage.data() ? std::move(storage) : std::string(body);
  head.append(body);
  return head;
}

namespace {

// Two 64-bit words that, together with the length, identify a word of at most 16 bytes. They
// come from (possibly overlapping) fixed-size loads, so no byte loop or memcpy call is needed.
void ShortKey(std::string_view w, uint64_t* k0, uint64_t* k1) {
  const char* p = w.data();
  const size_t n = w.size();
  if (n >= 8) {
    *k0 = Load8(p);
    *k1 = Load8(p + n - 8);
  } else if (n >= 4) {
    *k0 = (Load4(p) << 32) | Load4(p + n - 4);
    *k1 = 0;
  } else {
    *k0 = (uint64_t{static_cast<uint8_t>(p[0])} << 16) |
          (uint64_t{static_cast<uint8_t>(p[n / 2])} << 8) | static_cast<uint8_t>(p[n - 1]);
    *k1 = 0;
  }
}

uint64_t Mix(uint64_t h) {
  h ^= h >> 32;
  h *= 0xD6E8FEB86659FD93ull;
  return h ^ (h >> 32);
}

// Hash of a word: of its short key, or of all its 8-byte blocks for longer words.
uint64_t HashWord(std::string_view w, uint64_t k0, uint64_t k1) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (w.size() * 0xC2B2AE3D27D4EB4Full);
  if (w.size() <= 16) return Mix((h ^ k0 ^ (k1 * 0xBF58476D1CE4E5B9ull)) * 0x94D049BB133111EBull);
  const char* p = w.data();
  const size_t n = w.size();
  for (size_t i = 0; i + 8 < n; i += 8) {
    h = (h ^ Load8(p + i)) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
  }
  return Mix((h ^ Load8(p + n - 8)) * 0x94D049BB133111EBull);
}

}  // namespace

void WordCache::Reset(std::string_view text) {
  base_ = text.data();
  // Start small (zeroing a big table costs more than growing it: 1 MB of English has ~25k
  // distinct words); small texts (prompts) keep setup cheap.
  const size_t want = std::bit_ceil(std::clamp<size_t>(text.size() / 128, 64, size_t{1} << 15));
  if (slots_.size() != want || size_ > 0) slots_.assign(want, Entry{});
  size_ = 0;
}

WordCache::Entry& WordCache::FindOrInsert(std::string_view word, bool* inserted) {
  if ((size_ + 1) * 2 > slots_.size()) Rehash(slots_.size() * 2);
  const bool short_key = word.size() <= 16;
  uint64_t k0 = 0, k1 = 0;
  if (short_key) ShortKey(word, &k0, &k1);
  const uint64_t h = HashWord(word, k0, k1);
  const auto hash = static_cast<uint32_t>(h >> 32);
  const size_t mask = slots_.size() - 1;
  for (size_t i = static_cast<size_t>(h) & mask;; i = (i + 1) & mask) {
    Entry& e = slots_[i];
    if (e.key_size == 0) {
      e = {k0,
           k1,
           hash,
           static_cast<uint32_t>(word.data() - base_),
           static_cast<uint16_t>(word.size()),
           0,
           0};
      ++size_;
      *inserted = true;
      return e;
    }
    if (e.hash != hash || e.key_size != word.size()) continue;
    const bool same = short_key ? ((e.key0 ^ k0) | (e.key1 ^ k1)) == 0
                                : std::memcmp(base_ + e.key_offset, word.data(), word.size()) == 0;
    if (same) {
      *inserted = false;
      return e;
    }
  }
}

void WordCache::Rehash(size_t capacity) {
  std::vector<Entry> old = std::move(slots_);
  slots_.assign(capacity, Entry{});
  const size_t mask = capacity - 1;
  for (const Entry& e : old) {
    if (e.key_size == 0) continue;
    const std::string_view key(base_ + e.key_offset, e.key_size);
    size_t i = static_cast<size_t>(HashWord(key, e.key0, e.key1)) & mask;
    while (slots_[i].key_size != 0) i = (i + 1) & mask;
    slots_[i] = e;
  }
}

void Encoder::EncodeNormalized(std::string_view s) {
  if (s.empty()) return;
  if (d_.ignore_merges) {
    const auto it = d_.piece_ids.find(std::string(s));
    if (it != d_.piece_ids.end()) {
      out_.push_back(it->second);
      return;
    }
  }
  if (!d_.split_words) {
    EncodeWord(s);
    return;
  }
  cache_.Reset(s);
  size_t word_begin = 0;
  const char ws_last = d_.word_start.back();
  // Handles s[i] if it is a byte of interest: the start of a cut-off word or an opaque byte.
  const auto visit = [&](size_t i) {
    const auto b = static_cast<uint8_t>(s[i]);
    const uint8_t cls = d_.split_class[b];
    if (cls == TokenizerData::kSplitOpaque) {
      if (i > word_begin) CachedWord(s.substr(word_begin, i - word_begin));
      out_.push_back(d_.byte_ids[b]);
      word_begin = i + 1;
    } else if (cls == TokenizerData::kSplitWordStart && i > word_begin && AtWordStart(s, i) &&
               // Llama-2's common case without a call: the previous byte cannot end a "▁".
               !(joins_only_word_start_ ? s[i - 1] == ws_last && JoinsWordStart(s, word_begin, i)
                                        : JoinsWordStart(s, word_begin, i))) {
      CachedWord(s.substr(word_begin, i - word_begin));
      word_begin = i;
    }
  };
  size_t i = 0;
  if (d_.split_swar && std::endian::native == std::endian::little) {
    // Candidates eight bytes at a time (a superset: visit() checks each).
    const auto lead = static_cast<uint8_t>(d_.word_start[0]);
    for (; i + 8 <= s.size(); i += 8) {
      const uint64_t x = Load8(s.data() + i);
      for (uint64_t m = BytesEqual(x, lead) | BytesBelow(x, 0x21) | BytesEqual(x, 0x7F); m != 0;
           m &= m - 1) {
        visit(i + static_cast<size_t>(std::countr_zero(m) / 8));
      }
    }
  }
  for (; i < s.size(); ++i) visit(i);
  if (word_begin < s.size()) CachedWord(s.substr(word_begin));
}

// Whether the word-start character ("▁") begins at s[i] (s[i] is known to be its first byte).
bool Encoder::AtWordStart(std::string_view s, size_t i) const {
  const std::string& ws = d_.word_start;
  if (s.size() - i < ws.size()) return false;
  for (size_t k = 1; k < ws.size(); ++k) {  // a loop: std::equal would call memcmp
    if (s[i + k] != ws[k]) return false;
  }
  return true;
}

// Whether the character before s[pos] (within the current word) could merge with "▁".
bool Encoder::JoinsWordStart(std::string_view s, size_t word_begin, size_t pos) const {
  const std::string& ws = d_.word_start;
  if (joins_only_word_start_) {  // Llama-2: only "▁" joins "▁"
    if (pos - word_begin < ws.size()) return false;
    for (size_t k = 0; k < ws.size(); ++k) {
      if (s[pos - ws.size() + k] != ws[k]) return false;
    }
    return true;
  }
  size_t prev = pos - 1;
  while (prev > word_begin && (static_cast<uint8_t>(s[prev]) & 0xC0) == 0x80) --prev;
  const std::string_view ch = s.substr(prev, pos - prev);
  for (const std::string& j : d_.joins_word_start) {
    if (j == ch) return true;
  }
  return false;
}

void Encoder::CachedWord(std::string_view w) {
  // Long words rarely repeat; caching them would only cost memory.
  constexpr size_t kMaxCachedWord = 256;
  static_assert(kMaxCachedWord <= WordCache::kMaxKey);
  if (w.size() > kMaxCachedWord) {
    EncodeWord(w);
    return;
  }
  bool inserted = false;
  WordCache::Entry& e = cache_.FindOrInsert(w, &inserted);
  if (!inserted) {
    if (e.count == 1) {
      out_.push_back(e.value);
      return;
    }
    if (e.count == 0) {  // produced no ids, or too many to record
      EncodeWord(w);
      return;
    }
    // Copy the ids of the earlier occurrence (by index: push_back may reallocate out_).
    const auto offset = static_cast<size_t>(e.value);
    for (size_t i = 0; i < e.count; ++i) {
      const int id = out_[offset + i];
      out_.push_back(id);
    }
    return;
  }
  const size_t before = out_.size();
  EncodeWord(w);
  const size_t count = out_.size() - before;
  if (count > 0xFFFF || before > 0x7FFFFFFF) return;  // count stays 0: encode again when seen
  e.count = static_cast<uint16_t>(count);
  e.value = count == 1 ? out_[before] : static_cast<int32_t>(before);
}

// Initial symbols (the id of each character, or its byte-fallback tokens, or <unk>), then merges,
// as HF's BPE::merge_word does.
void Encoder::EncodeWord(std::string_view w) {
  symbols_.clear();
  bool after_unk = false;  // the previous character became <unk> (for fuse_unk)
  for (size_t i = 0; i < w.size();) {
    const auto c = static_cast<uint8_t>(w[i]);
    int32_t id;
    int len = 1;
    if (c < 0x80) {
      id = d_.ascii_ids[c];
    } else {
      len = utf8::CharLength(w, i);
      const auto it = d_.char_ids.find(utf8::DecodeChar(w.data() + i, len));
      id = it == d_.char_ids.end() ? -1 : it->second;
    }
    const std::string_view ch = w.substr(i, static_cast<size_t>(len));
    i += static_cast<size_t>(len);
    if (id >= 0) {
      symbols_.push_back(id);
      after_unk = false;
    } else if (d_.byte_fallback && AllBytesKnown(ch)) {
      for (char byte : ch) symbols_.push_back(d_.byte_ids[static_cast<uint8_t>(byte)]);
      after_unk = false;
    } else if (d_.model_unk_id >= 0) {
      if (!(d_.fuse_unk && after_unk)) symbols_.push_back(d_.model_unk_id);
      after_unk = true;
    }
  }
  // A long word (text without spaces: CJK, code, data) is cut further wherever no merge joins
  // the two symbols, e.g. around byte-fallback characters: smaller heaps, better locality.
  constexpr size_t kSegmentLongWords = 64;
  if (!d_.split_words || symbols_.size() < kSegmentLongWords) {
    bpe::Merge(d_.merges, &symbols_, &ws_);
    out_.insert(out_.end(), symbols_.begin(), symbols_.end());
    return;
  }
  size_t begin = 0;
  for (size_t i = 1; i <= symbols_.size(); ++i) {
    if (i < symbols_.size() && d_.joinable_units.Find(symbols_[i - 1], symbols_[i]).id >= 0) {
      continue;
    }
    segment_.assign(symbols_.begin() + static_cast<std::ptrdiff_t>(begin),
                    symbols_.begin() + static_cast<std::ptrdiff_t>(i));
    bpe::Merge(d_.merges, &segment_, &ws_);
    out_.insert(out_.end(), segment_.begin(), segment_.end());
    begin = i;
  }
}

bool Encoder::AllBytesKnown(std::string_view ch) const {
  for (char b : ch) {
    if (d_.byte_ids[static_cast<uint8_t>(b)] < 0) return false;
  }
  return true;
}

}  // namespace elm::tokenizer_internal
