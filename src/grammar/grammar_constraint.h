// A grammar as a TokenConstraint (sampling/token_constraint.h): which tokens of the vocabulary may
// come next. Every token's bytes (as they appear in the decoded text: "▁" is a space, "<0x0A>" its
// byte) sit in a byte trie; the mask of a state walks the trie depth first against the grammar,
// dropping a whole subtree at the first byte the grammar refuses, so a state that allows few
// tokens costs little. Grammar states are interned and their byte transitions memoized: inside a
// JSON string almost every byte leads back to the same state, so a walk over the whole vocabulary
// is mostly hash lookups. Masks are cached by state: JSON generation returns to the same few
// states (inside a string, after a comma...) token after token, so most steps are a lookup and
// one pass over the logits (docs/sampling.md, "Grammars and JSON schemas";
// bench/grammar_bench.cc).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "grammar/grammar.h"
#include "grammar/grammar_matcher.h"
#include "sampling/token_constraint.h"
#include "tokenizer/tokenizer.h"

namespace elm {

// The vocabulary's tokens by their text bytes. Built once per tokenizer and shared.
class TokenTrie {
 public:
  static std::shared_ptr<const TokenTrie> FromTokenizer(const Tokenizer& tok);

  struct Edge {
    uint8_t byte;
    uint32_t child;
  };
  struct Node {
    uint32_t first_edge = 0, n_edges = 0;  // edges sorted by byte
    uint32_t first_token = 0, n_tokens = 0;
  };

  int vocab_size() const { return vocab_size_; }
  int eos_id() const { return eos_id_; }
  // The decoder drops one space at the very start of a reply (HF's Strip decoder of Llama-2), so
  // the grammar does not see it.
  bool strip_leading_space() const { return strip_leading_space_; }
  const std::string& TokenBytes(int id) const { return bytes_[static_cast<size_t>(id)]; }

  std::vector<Node> nodes;  // nodes[0] is the root
  std::vector<Edge> edges;
  std::vector<int> tokens;  // ids ending at each node

 private:
  int vocab_size_ = 0;
  int eos_id_ = -1;
  bool strip_leading_space_ = false;
  std::vector<std::string> bytes_;  // empty for special tokens, which a grammar never allows
};

class GrammarConstraint : public TokenConstraint {
 public:
  // `continuation`: the text continues a prompt's and keeps its leading space (TextOutput's
  // continuation, the server), so the grammar sees that space too.
  GrammarConstraint(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const TokenTrie> vocab,
                    bool continuation = false);

  void Mask(std::span<float> logits) override;
  void Accept(int id) override;
  bool Complete() const override;

  // The tokens the current state allows (EOS included when the text may end).
  std::vector<int> AllowedTokens();
  // The text accepted so far.
  const std::string& text() const { return text_; }

 private:
  using Bits = std::vector<uint64_t>;
  const Bits& CurrentMask();
  void Walk(uint32_t node, int32_t state, bool strip, Bits& bits);
  int32_t Intern(GrammarState&& s);
  int32_t Step(int32_t state, uint8_t byte);  // -1: the grammar refuses the byte
  void ResetTables();

  std::shared_ptr<const Grammar> grammar_;
  std::shared_ptr<const TokenTrie> vocab_;
  GrammarMatcher matcher_;
  int32_t current_ = 0;       // interned id of the state after the text so far
  bool at_start_ = true;      // no token accepted yet (the leading space may be stripped)
  bool strip_start_ = false;  // the decoder strips one leading space of the text
  std::string text_;
  std::vector<GrammarState> states_;  // interned states by id
  std::unordered_map<std::string, int32_t> state_ids_;
  std::unordered_map<uint64_t, int32_t> steps_;  // (state << 8 | byte) -> next state or -1
  std::unordered_map<uint64_t, Bits> masks_;     // (state << 1 | at_start) -> allowed tokens
};

// Bounds on one constraint's tables; past them they are emptied and rebuilt as needed.
inline constexpr size_t kMaxCachedGrammarMasks = 1024;  // vocab_size bits each
inline constexpr size_t kMaxInternedGrammarStates = 1 << 16;

}  // namespace elm
