// Llama-2 style BPE tokenizer read from a HuggingFace tokenizer.json, producing exactly the ids of
// HF's fast tokenizer. See docs/tokenizer.md for the behaviour and the special-token policy.
//
// A Tokenizer is immutable after loading and cheap to copy (it shares its tables), so one instance
// can serve many threads; every method is const and thread-safe.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace elm {

namespace tokenizer_internal {
struct TokenizerData;
}

class Tokenizer {
 public:
  // Reads a tokenizer.json, plus tokenizer_config.json from the same directory if it exists.
  static Tokenizer FromFile(const std::string& tokenizer_json_path);
  // `origin_for_errors` names the source in error messages (usually the path).
  static Tokenizer FromJson(std::string_view json_text, std::string_view origin_for_errors,
                            std::string_view config_json_or_empty = {});
  // The Llama-2 tokenizer shipped inside the binary (data/tokenizer/llama2), parsed once.
  static Tokenizer Default();

  // Tokenizes `text` as plain text: a literal "<s>" in it is three characters, never BOS. This is
  // the safe default for user input; special tokens are inserted by id (e.g. by chat templates).
  // Throws elm::Error("invalid UTF-8 at byte N") for malformed input.
  std::vector<int> Encode(std::string_view text, bool add_bos) const;
  // Like Encode, but added tokens ("<s>", "</s>", "<unk>") written literally in `text` become their
  // ids, as HF's tokenizer does by default. The text between them is encoded piece by piece.
  std::vector<int> EncodeWithSpecial(std::string_view text, bool add_bos) const;

  // Text of `ids` as HF's decoder produces it ("▁" -> " ", byte tokens fused into UTF-8, one
  // leading space stripped). Throws elm::Error for ids outside the vocabulary.
  std::string Decode(std::span<const int> ids, bool skip_special = true) const;

  // Raw vocabulary string of `id`, e.g. "▁the" or "<0x0A>". Throws elm::Error when out of range.
  const std::string& Piece(int id) const;
  std::optional<int> TokenId(std::string_view piece) const;

  int vocab_size() const;
  int bos_id() const;  // -1 if the tokenizer has none
  int eos_id() const;  // -1 if the tokenizer has none
  int unk_id() const;  // -1 if the tokenizer has none
  // Whether BOS should be added to a prompt (tokenizer_config.json "add_bos_token", else the
  // post-processor template).
  bool add_bos() const;
  bool IsSpecial(int id) const;

 private:
  friend class StreamDecoder;
  explicit Tokenizer(std::shared_ptr<const tokenizer_internal::TokenizerData> data)
      : data_(std::move(data)) {}
  void CheckId(int id) const;

  std::shared_ptr<const tokenizer_internal::TokenizerData> data_;
};

// Incremental decoding for streaming generation: Push() returns only text made of complete UTF-8
// characters (a character split over several byte-fallback tokens comes out once its last byte
// arrives), and the leading space is stripped only at the very start of the stream. For ids whose
// bytes form valid UTF-8, the concatenation of all Push() results and Flush() equals
// Tokenizer::Decode() of all ids. A `continuation` stream continues text decoded before it (a
// prompt's): nothing is stripped, so the prompt's text followed by the stream's is
// Decode(prompt + ids).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = true, bool continuation = false);

  std::string Push(int id);  // text completed by `id` (possibly empty)
  std::string Flush();       // the rest; incomplete bytes become U+FFFD, one per byte

 private:
  void Emit(std::string_view text, std::string* out);
  void DrainBytes(bool final, std::string* out);

  Tokenizer tok_;  // a cheap shared copy, so the decoder cannot outlive its tables
  bool skip_special_;
  int strip_left_;       // how many more leading strip characters (" ") may still be removed
  std::string pending_;  // bytes of byte-fallback tokens not yet forming a complete character
};

}  // namespace elm
