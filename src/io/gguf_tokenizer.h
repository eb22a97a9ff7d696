// The tokenizer inside a GGUF file: llama.cpp's tokenizer.ggml.* keys for a SentencePiece
// ("llama") vocabulary, in both directions, and an HF tokenizer.json rebuilt from them.
//
// Conventions (derived from the GGUF that llama.cpp's converter writes for OpenELM, see
// docs/formats.md):
//   token_type: 1 normal, 2 unknown (<unk>), 3 control (<s>, </s>), 4 user-defined, 6 byte
//               (<0x00>..<0xFF>);
//   scores:     0 for non-normal tokens; normal tokens score -(their rank among the normal
//               tokens), except pieces made only of "▁", which score -1e9. For the Llama-2
//               vocabulary this is exactly SentencePiece's model scores.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace elm {

class GgufFile;
class GgufWriter;

enum GgufTokenType : int32_t {
  kTokenNormal = 1,
  kTokenUnknown = 2,
  kTokenControl = 3,
  kTokenUserDefined = 4,
  kTokenUnused = 5,
  kTokenByte = 6,
};

struct GgufVocab {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  int bos = -1, eos = -1, unk = -1, pad = -1;
  bool add_bos = true, add_eos = false;
  // tokenizer.huggingface.json when the file has one (elm embeds it for tokenizers that are not
  // the built-in Llama-2 one, so the exact HF tokenizer survives the trip).
  std::string hf_json;
  std::string chat_template;  // tokenizer.chat_template, carried along when present
};

// The vocabulary of `tok` in llama.cpp's convention.
GgufVocab VocabFromTokenizer(const Tokenizer& tok);
// tokenizer.ggml.* of a GGUF file (the model must be "llama"); nullopt when the file has no
// tokenizer.ggml.tokens. Errors name the file and the key.
std::optional<GgufVocab> VocabFromGguf(const GgufFile& f);
// Writes the tokenizer keys in the order llama.cpp's converter does.
void AddVocabToGguf(GgufWriter& w, const GgufVocab& v);

// An HF tokenizer.json (Llama-2 layout: BPE with byte fallback, "▁" normalizer) equivalent to
// `v`. Merges are derived from the scores as HF's SentencePiece converter does (every split of a
// piece into two pieces, ordered by the merged piece's score, then by the ids of the parts); for
// the Llama-2 vocabulary this reproduces HF's tokenizer.json merges exactly.
std::string TokenizerJsonFromVocab(const GgufVocab& v);
std::string TokenizerConfigJsonFromVocab(const GgufVocab& v);

// The tokenizer a GGUF file carries (tokenizer.huggingface.json if present, else one rebuilt from
// tokenizer.ggml.*; the built-in Llama-2 tokenizer when the vocabulary is exactly that one);
// nullopt when the file has no tokenizer.
std::optional<Tokenizer> TokenizerFromGguf(const GgufFile& f);
std::optional<Tokenizer> TokenizerFromGguf(const std::string& path);

}  // namespace elm
