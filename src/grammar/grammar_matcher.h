// Runs a Grammar (grammar.h) over bytes, as llama.cpp's grammar sampler does: the state is the set
// of parse stacks the input so far allows. A stack lists element indices, its top (back) being
// the next character class to match; an empty stack means the input can end here. Bytes are
// decoded as UTF-8 on the way: in the middle of a multi-byte character the state keeps only the
// stacks whose class can still match a code point with those leading bytes, so a token that ends
// inside a character is accepted exactly when some continuation could be.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "grammar/grammar.h"

namespace elm {

using GrammarStack = std::vector<uint32_t>;

struct GrammarState {
  std::vector<GrammarStack> stacks;  // sorted, no duplicates
  uint32_t partial = 0;              // code point bits read of an unfinished UTF-8 character
  uint8_t lead = 0;                  // its first byte (0: no character in progress)
  uint8_t need = 0;                  // continuation bytes still to come

  bool operator==(const GrammarState&) const = default;
  // A compact key of the state, for caches.
  std::string Key() const;
};

// The most stacks a state may hold; a grammar ambiguous enough to need more is refused
// (elm::Error) rather than let one step take unbounded time.
inline constexpr size_t kMaxGrammarStacks = 2048;

class GrammarMatcher {
 public:
  explicit GrammarMatcher(const Grammar& g) : g_(g) {}

  GrammarState Initial() const;
  // The state after `byte`; false (out untouched or partial) when the grammar cannot take it.
  bool Advance(const GrammarState& in, uint8_t byte, GrammarState& out) const;
  // Bytes one after another; false at the first refused byte.
  bool AdvanceAll(GrammarState& state, std::string_view bytes) const;
  // The input may end here (some stack is empty, no character half read).
  static bool CanEnd(const GrammarState& s);
  // Nothing can follow: the input must end here.
  static bool MustEnd(const GrammarState& s) { return CanEnd(s) && s.stacks.size() == 1; }

  // Whether the whole of `text` is in the grammar's language.
  bool Accepts(std::string_view text) const;

  const Grammar& grammar() const { return g_; }

 private:
  void Expand(GrammarStack& stack, std::vector<GrammarStack>& out) const;
  void Normalize(std::vector<GrammarStack>& stacks) const;

  const Grammar& g_;
};

}  // namespace elm
