// The tables behind elm::Tokenizer, built once by the tokenizer.json loader and then read-only.
// Internal to src/tokenizer.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/bpe.h"

namespace elm::tokenizer_internal {

// One step of the normalizer. HF's Prepend adds its text only to a non-empty string; Replace
// substitutes every (non-overlapping, left to right) occurrence of a literal pattern.
struct NormalizerOp {
  enum class Kind { kPrepend, kReplace };
  Kind kind;
  std::string pattern;  // kReplace only
  std::string content;
};

struct AddedToken {
  std::string content;
  int id;
  bool special;
};

struct TokenizerData {
  // --- vocabulary (model vocab plus added tokens), indexed by id
  std::vector<std::string> pieces;  // raw strings, e.g. "▁the", "<0x0A>", "<s>"
  std::unordered_map<std::string, int> piece_ids;
  std::vector<uint8_t> special;  // 1 for added tokens marked "special"
  std::vector<AddedToken> added;
  std::array<bool, 256> added_first_byte{};  // quick filter for EncodeWithSpecial's matcher

  // --- normalizer
  std::vector<NormalizerOp> normalizer;

  // --- BPE model
  bpe::MergeTable merges;
  // Initial symbol of each character: ids of single-character vocabulary entries. ASCII has a
  // flat table because it dominates real text.
  std::array<int32_t, 128> ascii_ids{};  // -1: not in the vocabulary
  std::unordered_map<char32_t, int32_t> char_ids;
  std::array<int32_t, 256> byte_ids{};  // id of "<0xNN>", -1 if absent
  bool byte_fallback = false;
  bool fuse_unk = false;
  bool ignore_merges = false;
  int model_unk_id = -1;  // model.unk_token: replaces characters without byte fallback (fused if
                          // fuse_unk); without it such characters are dropped, as in HF

  // Word splitting, a pure speed-up (see encoder.cc). The normalized text is cut in front of each
  // `word_start` character ("▁") unless the preceding character is in `joins_word_start` (some
  // merge could glue the two), and around ASCII characters that become byte-fallback tokens.
  // Off unless the loader can prove the cuts exact.
  enum SplitClass : uint8_t { kSplitNone, kSplitOpaque, kSplitWordStart };
  bool split_words = false;
  std::string word_start;
  std::vector<std::string> joins_word_start;
  // (x, y) pairs of initial symbols that some merge joins (its left side ends with x, its right
  // side starts with y); a long word is also cut between any other two symbols. Ranks unused.
  bpe::MergeTable joinable_units;
  std::array<uint8_t, 256> split_class{};
  // The bytes of interest are word_start[0], and opaque ones all <= 0x20 or 0x7F: the encoder may
  // then look for them eight bytes at a time.
  bool split_swar = false;  // by byte: kSplitOpaque for ASCII byte-fallback
                            // characters, kSplitWordStart for word_start[0]

  // --- decoder
  std::vector<std::string> texts;  // id -> piece after the decoder's Replace steps
  std::vector<int16_t> byte_of;    // id -> byte value if decoded by ByteFallback, else -1
  std::string strip_content;       // Strip decoder: character removed from the start...
  int strip_start = 0;             // ...at most this many times

  // --- special tokens and post-processing
  int unk_id = -1;  // model.unk_token, else the config's unk_token, else "<unk>"
  int bos_id = -1;
  int eos_id = -1;
  bool add_bos = false;
};

// Parses tokenizer.json (and optionally tokenizer_config.json; empty text = absent). Errors name
// the origin and the offending field.
std::shared_ptr<const TokenizerData> ParseTokenizerJson(std::string_view json_text,
                                                        std::string_view origin,
                                                        std::string_view config_text,
                                                        std::string_view config_origin);

}  // namespace elm::tokenizer_internal
