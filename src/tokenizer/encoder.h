// Text -> ids for one encoding call: normalization, cutting the normalized text into independent
// words, a per-call word cache, and the BPE merge loop for each new word. Internal to
// src/tokenizer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer_data.h"

namespace elm::tokenizer_internal {

// Applies the normalizer steps (for Llama-2: prepend "▁", then " " -> "▁").
std::string Normalize(const TokenizerData& d, std::string_view text);

// Memo of word -> ids for one normalized text. A 32-byte slot holds a short word inline as two
// 64-bit words (longer ones are compared against their first occurrence in the text) and the id
// itself when the word is a single token (the common case), else the position of the earlier ids
// in the output vector: a hit usually touches one cache line and calls nothing.
class WordCache {
 public:
  struct Entry {
    uint64_t key0, key1;  // ShortKey() of a word of at most 16 bytes
    uint32_t hash;
    uint32_t key_offset;  // into the text
    uint16_t key_size;    // 0: empty slot
    uint16_t count;       // number of ids
    int32_t value;        // the id if count == 1, else the offset of the ids in the output
  };
  static constexpr size_t kMaxKey = 0xFFFF;

  // Empties the cache and binds it to `text` (which must outlive its use), sized for its length.
  void Reset(std::string_view text);
  // The entry of `word` (a substring of the text, at most kMaxKey bytes); a new one, with count
  // and value to be filled in, if *inserted.
  Entry& FindOrInsert(std::string_view word, bool* inserted);

 private:
  void Rehash(size_t capacity);

  const char* base_ = nullptr;
  std::vector<Entry> slots_;
  size_t size_ = 0;
};

class Encoder {
 public:
  Encoder(const TokenizerData& d, std::vector<int>* out)
      : d_(d),
        out_(*out),
        joins_only_word_start_(d.joins_word_start.size() == 1 &&
                               d.joins_word_start[0] == d.word_start) {}

  // Appends the ids of an already normalized text.
  void EncodeNormalized(std::string_view s);

 private:
  bool JoinsWordStart(std::string_view s, size_t word_begin, size_t pos) const;
  bool AtWordStart(std::string_view s, size_t i) const;
  void CachedWord(std::string_view w);
  void EncodeWord(std::string_view w);
  bool AllBytesKnown(std::string_view ch) const;

  const TokenizerData& d_;
  std::vector<int>& out_;
  const bool joins_only_word_start_;
  std::vector<int32_t> symbols_;
  std::vector<int32_t> segment_;
  bpe::Workspace ws_;
  WordCache cache_;
};

}  // namespace elm::tokenizer_internal
