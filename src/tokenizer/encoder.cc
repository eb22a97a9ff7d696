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

#include "tokenizer/utf8.h"

namespace elm::tokenizer_internal {

std::string Normalize(const TokenizerData& d, std::string_view text) {
  // Each step reads `view` (the input, then the previous step's result) and writes a new string.
  std::string result, scratch;
  std::string_view view = text;
  bool copied = false;  // `view` refers to `result`
  for (const NormalizerOp& op : d.normalizer) {
    if (op.kind == NormalizerOp::Kind::kPrepend) {
      if (view.empty()) continue;  // HF's Prepend leaves "" alone
      scratch.clear();
      scratch.reserve(op.content.size() + view.size());
      scratch.append(op.content).append(view);
    } else {
      size_t hit = view.find(op.pattern);
      if (hit == std::string_view::npos) continue;
      scratch.clear();
      scratch.reserve(view.size() + view.size() / 4 * (op.content.size() + 1));
      size_t pos = 0;
      for (; hit != std::string_view::npos; hit = view.find(op.pattern, pos)) {
        scratch.append(view.substr(pos, hit - pos)).append(op.content);
        pos = hit + op.pattern.size();
      }
      scratch.append(view.substr(pos));
    }
    result.swap(scratch);
    view = result;
    copied = true;
  }
  return copied ? result : std::string(text);
}

namespace {

// A fast hash for short strings (words are ~10 bytes): 8 bytes per multiply, then a final mix.
uint64_t HashWord(std::string_view w) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (w.size() * 0xC2B2AE3D27D4EB4Full);
  const char* p = w.data();
  size_t n = w.size();
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    h = (h ^ v) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
  }
  if (n > 0) {
    uint64_t v = 0;
    std::memcpy(&v, p, n);
    h = (h ^ v) * 0x94D049BB133111EBull;
  }
  h ^= h >> 32;
  h *= 0xD6E8FEB86659FD93ull;
  return h ^ (h >> 32);
}

}  // namespace

void WordCache::Reset(std::string_view text) {
  base_ = text.data();
  // About one distinct word per 32 bytes of text; small texts (prompts) keep setup cheap.
  const size_t want = std::bit_ceil(std::clamp<size_t>(text.size() / 16, 64, size_t{1} << 16));
  if (slots_.size() != want || size_ > 0) slots_.assign(want, Entry{});
  size_ = 0;
}

WordCache::Entry& WordCache::FindOrInsert(std::string_view word, bool* inserted) {
  if ((size_ + 1) * 2 > slots_.size()) Rehash(slots_.size() * 2);
  const uint64_t h = HashWord(word);
  const auto hash = static_cast<uint32_t>(h >> 32);
  const bool short_key = word.size() <= kInlineKey;
  char padded[kInlineKey] = {};
  if (short_key) std::memcpy(padded, word.data(), word.size());
  const size_t mask = slots_.size() - 1;
  for (size_t i = static_cast<size_t>(h) & mask;; i = (i + 1) & mask) {
    Entry& e = slots_[i];
    if (e.key_size == 0) {
      e.hash = hash;
      e.key_size = static_cast<uint16_t>(word.size());
      e.count = 0;
      e.value = 0;
      e.key_offset = static_cast<uint32_t>(word.data() - base_);
      std::memcpy(e.inline_key, padded, kInlineKey);
      ++size_;
      *inserted = true;
      return e;
    }
    if (e.hash != hash || e.key_size != word.size()) continue;
    const bool same = short_key ? std::memcmp(e.inline_key, padded, kInlineKey) == 0
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
    size_t i = static_cast<size_t>(HashWord(key)) & mask;
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
  const std::string_view ws = d_.word_start;
  size_t word_begin = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto b = static_cast<uint8_t>(s[i]);
    const uint8_t cls = d_.split_class[b];
    if (cls == TokenizerData::kSplitNone) continue;
    if (cls == TokenizerData::kSplitOpaque) {
      if (i > word_begin) CachedWord(s.substr(word_begin, i - word_begin));
      out_.push_back(d_.byte_ids[b]);
      word_begin = i + 1;
    } else if (i > word_begin && s.compare(i, ws.size(), ws) == 0 &&
               !JoinsWordStart(s, word_begin, i)) {
      CachedWord(s.substr(word_begin, i - word_begin));
      word_begin = i;
    }
  }
  if (word_begin < s.size()) CachedWord(s.substr(word_begin));
}

// Whether the character before s[pos] (within the current word) could merge with "▁".
bool Encoder::JoinsWordStart(std::string_view s, size_t word_begin, size_t pos) const {
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
  bpe::Merge(d_.merges, &symbols_, &ws_);
  out_.insert(out_.end(), symbols_.begin(), symbols_.end());
}

bool Encoder::AllBytesKnown(std::string_view ch) const {
  for (char b : ch) {
    if (d_.byte_ids[static_cast<uint8_t>(b)] < 0) return false;
  }
  return true;
}

}  // namespace elm::tokenizer_internal
