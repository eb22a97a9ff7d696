// A context-free grammar over Unicode code points, as llama.cpp's GBNF writes one
// (docs/sampling.md, "Grammars and JSON schemas"), and its parser.
//
// The grammar is stored flat: every alternative of every rule is a run of elements in one array,
// ended by a kEnd element. A character class element points into a shared table of ranges; a
// rule reference names the rule by index. Groups and repetitions (`( )`, `*`, `+`, `?`, `{m,n}`)
// are rewritten into generated rules while parsing, so a matcher (grammar_matcher.h) only sees
// sequences, character classes and references.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace elm {

struct GrammarElement {
  enum class Kind : uint8_t { kEnd, kChars, kRule };
  Kind kind = Kind::kEnd;
  bool negated = false;  // kChars: matches code points in none of the ranges
  uint32_t a = 0;        // kChars: first range index; kRule: the rule index
  uint32_t b = 0;        // kChars: number of ranges
};

struct CodePointRange {
  uint32_t lo = 0, hi = 0;  // inclusive
};

struct Grammar {
  std::vector<GrammarElement> elements;
  std::vector<CodePointRange> ranges;
  std::vector<std::string> rule_names;           // generated rules are named "<rule>_<n>"
  std::vector<std::vector<uint32_t>> rule_alts;  // per rule: element index of each alternative
  uint32_t root = 0;

  // Whether the character class at element `e` matches code point `cp`.
  bool Matches(uint32_t e, uint32_t cp) const;
  // Whether it matches some code point in [lo, hi].
  bool MatchesSome(uint32_t e, uint32_t lo, uint32_t hi) const;
};

// Limits that keep a hostile grammar's cost bounded (a request's grammar comes from a client).
inline constexpr size_t kMaxGrammarElements = 1 << 20;
inline constexpr int kMaxGrammarRepeat = 10000;  // the largest m or n of x{m,n}
inline constexpr int kMaxGrammarNesting = 256;   // parentheses inside parentheses

// Parses GBNF text: `name ::= alternatives` rules (names of letters, digits, '-' and '_'),
// "literals" and [classes] with llama.cpp's escapes (\n \r \t \\ \" \[ \] \xHH \uHHHH
// \UHHHHHHHH), `.` for any character, ( groups ), `|`, postfix `*` `+` `?` `{m}` `{m,}` `{m,n}`,
// and `#` comments. A rule may span lines; a new rule starts at `name ::=`. The start rule is
// `root`. Throws elm::Error naming the line and column (`origin`: the file name or field) for a
// syntax error, an undefined or duplicate rule, a missing root, left recursion (a rule that can
// reach itself without consuming a character, which includes `x*` of an `x` that matches the
// empty string) or a grammar above the limits.
Grammar ParseGbnf(std::string_view text, std::string_view origin = "grammar");

// `s` as a GBNF string literal, quoted and escaped ("a\"b" for a"b); UTF-8 passes through.
std::string GbnfLiteral(std::string_view s);

}  // namespace elm
