#include "grammar/grammar.h"

#include <algorithm>
#include <map>
#include <string>

#include "base/error.h"
#include "text/utf8.h"

namespace elm {

bool Grammar::Matches(uint32_t e, uint32_t cp) const {
  const GrammarElement& el = elements[e];
  bool in = false;
  for (uint32_t i = el.a; i < el.a + el.b && !in; ++i)
    in = ranges[i].lo <= cp && cp <= ranges[i].hi;
  return in != el.negated;
}

bool Grammar::MatchesSome(uint32_t e, uint32_t lo, uint32_t hi) const {
  const GrammarElement& el = elements[e];
  if (!el.negated) {
    for (uint32_t i = el.a; i < el.a + el.b; ++i)
      if (ranges[i].lo <= hi && lo <= ranges[i].hi) return true;
    return false;
  }
  // Negated: some code point of [lo, hi] lies outside every range. Walk lo upwards past ranges.
  uint32_t cur = lo;
  bool moved = true;
  while (moved && cur <= hi) {
    moved = false;
    for (uint32_t i = el.a; i < el.a + el.b; ++i)
      if (ranges[i].lo <= cur && cur <= ranges[i].hi) {
        if (ranges[i].hi >= hi) return false;
        cur = ranges[i].hi + 1;
        moved = true;
      }
  }
  return cur <= hi;
}

std::string GbnfLiteral(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7F) {
      static const char* kHex = "0123456789ABCDEF";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

namespace {

using GbnfSequence = std::vector<GrammarElement>;
using GbnfAlternatives = std::vector<GbnfSequence>;

class GbnfParser {
 public:
  GbnfParser(std::string_view text, std::string_view origin) : s_(text), origin_(origin) {}

  Grammar Parse() {
    SkipSpace();
    if (pos_ >= s_.size()) Error("the grammar is empty (expected rules such as root ::= ...)");
    while (pos_ < s_.size()) {
      const size_t at = pos_;
      const std::string name = ParseName();
      SkipSpace();
      if (s_.substr(pos_, 3) != "::=") Error("expected '::=' after rule name '" + name + "'");
      pos_ += 3;
      const uint32_t r = RuleIndex(name, at);
      if (defined_[r]) ErrorAt(at, "rule '" + name + "' is defined twice");
      defined_[r] = true;
      rules_[r] = ParseAlternatives(name, 0);
      SkipSpace();
      if (pos_ < s_.size() && !AtRuleStart())
        Error(std::string("unexpected '") + s_[pos_] + "' (expected a new rule 'name ::= ...')");
    }
    for (size_t r = 0; r < rules_.size(); ++r)
      if (!defined_[r]) ErrorAt(first_use_[r], "rule '" + names_[r] + "' is used but not defined");
    const auto root = index_.find("root");
    if (root == index_.end()) Fail(origin_, ": the grammar has no 'root' rule");
    return Flatten(root->second);
  }

 private:
  [[noreturn]] void ErrorAt(size_t at, const std::string& what) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at && i < s_.size(); ++i) {
      if (s_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    Fail(origin_, ":", line, ":", col, ": ", what);
  }
  [[noreturn]] void Error(const std::string& what) const { ErrorAt(pos_, what); }

  static bool IsNameChar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  }

  void SkipSpace() {
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        ++pos_;
      } else if (c == '#') {
        while (pos_ < s_.size() && s_[pos_] != '\n') ++pos_;
      } else {
        break;
      }
    }
  }

  // At `name ::=` (the start of the next rule)?
  bool AtRuleStart() const {
    size_t p = pos_;
    while (p < s_.size() && IsNameChar(s_[p])) ++p;
    if (p == pos_) return false;
    while (p < s_.size() && (s_[p] == ' ' || s_[p] == '\t' || s_[p] == '\n' || s_[p] == '\r')) ++p;
    return s_.substr(p, 3) == "::=";
  }

  std::string ParseName() {
    const size_t start = pos_;
    while (pos_ < s_.size() && IsNameChar(s_[pos_])) ++pos_;
    if (pos_ == start) {
      if (pos_ < s_.size()) Error(std::string("expected a rule name, got '") + s_[pos_] + "'");
      Error("expected a rule name");
    }
    return std::string(s_.substr(start, pos_ - start));
  }

  // The rule's index, created at its first mention (`at`: where, for the "not defined" error).
  uint32_t RuleIndex(const std::string& name, size_t at) {
    const auto it = index_.find(name);
    if (it != index_.end()) return it->second;
    const auto r = static_cast<uint32_t>(rules_.size());
    index_.emplace(name, r);
    names_.push_back(name);
    rules_.emplace_back();
    defined_.push_back(false);
    first_use_.push_back(at);
    return r;
  }

  uint32_t NewRule(const std::string& base, GbnfAlternatives alts) {
    std::string name;
    do {
      name = base + "_" + std::to_string(++generated_);
    } while (index_.count(name));
    const uint32_t r = RuleIndex(name, pos_);
    defined_[r] = true;
    rules_[r] = std::move(alts);
    return r;
  }

  static GrammarElement Ref(uint32_t r) {
    GrammarElement e;
    e.kind = GrammarElement::Kind::kRule;
    e.a = r;
    return e;
  }

  GrammarElement Chars(std::vector<CodePointRange> rs, bool negated) {
    GrammarElement e;
    e.kind = GrammarElement::Kind::kChars;
    e.negated = negated;
    e.a = static_cast<uint32_t>(ranges_.size());
    e.b = static_cast<uint32_t>(rs.size());
    ranges_.insert(ranges_.end(), rs.begin(), rs.end());
    return e;
  }

  void Count(size_t n) {
    total_ += n;
    if (total_ > kMaxGrammarElements)
      Error("the grammar is too large (more than " + std::to_string(kMaxGrammarElements) +
            " elements once repetitions are expanded)");
  }

  GbnfAlternatives ParseAlternatives(const std::string& base, int depth) {
    if (depth > kMaxGrammarNesting)
      Error("parentheses nested more than " + std::to_string(kMaxGrammarNesting) + " deep");
    GbnfAlternatives alts;
    alts.push_back(ParseSequence(base, depth));
    SkipSpace();
    while (pos_ < s_.size() && s_[pos_] == '|') {
      ++pos_;
      alts.push_back(ParseSequence(base, depth));
      SkipSpace();
    }
    return alts;
  }

  GbnfSequence ParseSequence(const std::string& base, int depth) {
    GbnfSequence seq;
    for (;;) {
      SkipSpace();
      if (pos_ >= s_.size()) break;
      const char c = s_[pos_];
      if (c == '|' || c == ')') break;
      if (AtRuleStart()) break;
      GbnfSequence item;
      if (c == '"') {
        ParseLiteral(item);
      } else if (c == '[') {
        item.push_back(ParseClass());
      } else if (c == '.') {
        ++pos_;
        item.push_back(Chars({}, true));
      } else if (c == '(') {
        const size_t open = pos_++;
        GbnfAlternatives inner = ParseAlternatives(base, depth + 1);
        if (pos_ >= s_.size() || s_[pos_] != ')') ErrorAt(open, "unclosed '('");
        ++pos_;
        item.push_back(Ref(NewRule(base, std::move(inner))));
      } else if (IsNameChar(c)) {
        const size_t at = pos_;
        item.push_back(Ref(RuleIndex(ParseName(), at)));
      } else {
        Error(std::string("unexpected '") + c + "'");
      }
      ParsePostfix(base, item);
      Count(item.size());
      seq.insert(seq.end(), item.begin(), item.end());
    }
    return seq;
  }

  // Reads x*, x+, x?, x{m}, x{m,}, x{m,n} after an item (several may follow one another).
  void ParsePostfix(const std::string& base, GbnfSequence& item) {
    for (;;) {
      size_t p = pos_;
      while (p < s_.size() && (s_[p] == ' ' || s_[p] == '\t')) ++p;
      if (p >= s_.size()) return;
      const char c = s_[p];
      if (c != '*' && c != '+' && c != '?' && c != '{') return;
      pos_ = p + 1;
      int lo = 0, hi = -1;  // hi -1: unbounded
      if (c == '+') lo = 1;
      if (c == '?') hi = 1;
      if (c == '{') {
        SkipSpace();
        lo = ParseCount();
        SkipSpace();
        hi = lo;
        if (pos_ < s_.size() && s_[pos_] == ',') {
          ++pos_;
          SkipSpace();
          hi = pos_ < s_.size() && s_[pos_] == '}' ? -1 : ParseCount();
          SkipSpace();
        }
        if (pos_ >= s_.size() || s_[pos_] != '}') Error("expected '}' to close a repetition");
        ++pos_;
        if (hi >= 0 && hi < lo) Error("repetition {m,n} has n < m");
      }
      item = Repeat(base, item, lo, hi);
    }
  }

  int ParseCount() {
    const size_t start = pos_;
    int64_t v = 0;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
      v = v * 10 + (s_[pos_++] - '0');
      if (v > kMaxGrammarRepeat)
        ErrorAt(start, "repetition count above " + std::to_string(kMaxGrammarRepeat));
    }
    if (pos_ == start) Error("expected a number in a repetition {m,n}");
    return static_cast<int>(v);
  }

  GbnfSequence Repeat(const std::string& base, const GbnfSequence& item, int lo, int hi) {
    GbnfSequence out;
    Count(item.size() * static_cast<size_t>(lo));
    for (int i = 0; i < lo; ++i) out.insert(out.end(), item.begin(), item.end());
    if (hi < 0) {  // x*: R ::= x R | (empty)
      const uint32_t r = NewRule(base, {});
      GbnfSequence again = item;
      again.push_back(Ref(r));
      rules_[r] = {again, {}};
      Count(again.size());
      out.push_back(Ref(r));
      return out;
    }
    // Up to hi - lo more: O1 ::= x O2 | (empty), ..., On ::= x | (empty), built from the last.
    int optional = hi - lo;
    if (optional == 0) return out;
    Count(item.size() * static_cast<size_t>(optional));
    uint32_t next = NewRule(base, {item, {}});
    for (int i = 1; i < optional; ++i) {
      GbnfSequence s = item;
      s.push_back(Ref(next));
      next = NewRule(base, {s, {}});
    }
    out.push_back(Ref(next));
    return out;
  }

  // One source character or escape inside a literal or class.
  uint32_t ParseChar() {
    if (pos_ >= s_.size()) Error("unexpected end of the grammar");
    const auto b = static_cast<uint8_t>(s_[pos_]);
    if (b == '\\') {
      if (pos_ + 1 >= s_.size()) Error("unfinished escape");
      const char e = s_[pos_ + 1];
      pos_ += 2;
      switch (e) {
        case 'n':
          return '\n';
        case 'r':
          return '\r';
        case 't':
          return '\t';
        case '\\':
        case '"':
        case '[':
        case ']':
        case '-':
        case '^':
          return static_cast<uint8_t>(e);
        case 'x':
          return ParseHex(2);
        case 'u':
          return ParseHex(4);
        case 'U':
          return ParseHex(8);
        default:
          pos_ -= 2;
          Error(std::string("unknown escape '\\") + e + "'");
      }
    }
    const int n = utf8::SequenceLength(b);
    if (n == 0 || pos_ + n > s_.size()) Error("invalid UTF-8 in the grammar");
    uint32_t cp = n == 1 ? b : b & (0xFF >> (n + 1));
    for (int i = 1; i < n; ++i) {
      const auto c = static_cast<uint8_t>(s_[pos_ + i]);
      if ((c & 0xC0) != 0x80 || (i == 1 && !utf8::SecondByteOk(b, c)))
        Error("invalid UTF-8 in the grammar");
      cp = (cp << 6) | (c & 0x3F);
    }
    pos_ += n;
    return cp;
  }

  uint32_t ParseHex(int digits) {
    uint32_t v = 0;
    for (int i = 0; i < digits; ++i) {
      if (pos_ >= s_.size()) Error("unfinished hex escape");
      const char c = s_[pos_];
      int d = -1;
      if (c >= '0' && c <= '9') d = c - '0';
      if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      if (d < 0) Error("expected a hex digit in an escape");
      v = v * 16 + static_cast<uint32_t>(d);
      ++pos_;
    }
    if (v > 0x10FFFF) Error("escape beyond U+10FFFF");
    return v;
  }

  void ParseLiteral(GbnfSequence& out) {
    const size_t open = pos_++;
    while (pos_ < s_.size() && s_[pos_] != '"') {
      if (s_[pos_] == '\n') ErrorAt(open, "unterminated string literal");
      const uint32_t cp = ParseChar();
      out.push_back(Chars({{cp, cp}}, false));
    }
    if (pos_ >= s_.size()) ErrorAt(open, "unterminated string literal");
    ++pos_;
  }

  GrammarElement ParseClass() {
    const size_t open = pos_++;
    bool negated = false;
    if (pos_ < s_.size() && s_[pos_] == '^') {
      negated = true;
      ++pos_;
    }
    std::vector<CodePointRange> rs;
    while (pos_ < s_.size() && s_[pos_] != ']') {
      const uint32_t lo = ParseChar();
      uint32_t hi = lo;
      if (pos_ + 1 < s_.size() && s_[pos_] == '-' && s_[pos_ + 1] != ']') {
        ++pos_;
        hi = ParseChar();
        if (hi < lo) Error("character range with its end before its start");
      }
      rs.push_back({lo, hi});
    }
    if (pos_ >= s_.size()) ErrorAt(open, "unclosed '['");
    ++pos_;
    return Chars(std::move(rs), negated);
  }

  Grammar Flatten(uint32_t root) {
    Grammar g;
    g.ranges = std::move(ranges_);
    g.rule_names = names_;
    g.root = root;
    g.rule_alts.resize(rules_.size());
    for (size_t r = 0; r < rules_.size(); ++r)
      for (const GbnfSequence& alt : rules_[r]) {
        g.rule_alts[r].push_back(static_cast<uint32_t>(g.elements.size()));
        g.elements.insert(g.elements.end(), alt.begin(), alt.end());
        g.elements.push_back(GrammarElement{});
      }
    CheckLeftRecursion();
    return g;
  }

  // A rule that reaches itself before consuming a character would make the matcher loop.
  void CheckLeftRecursion() {
    const size_t n = rules_.size();
    std::vector<bool> nullable(n, false);
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t r = 0; r < n; ++r) {
        if (nullable[r]) continue;
        for (const GbnfSequence& alt : rules_[r]) {
          bool all = true;
          for (const auto& e : alt)
            if (e.kind != GrammarElement::Kind::kRule || !nullable[e.a]) {
              all = false;
              break;
            }
          if (all) {
            nullable[r] = changed = true;
            break;
          }
        }
      }
    }
    // Edges r -> s where s can be first; a cycle is left recursion.
    std::vector<std::vector<uint32_t>> first(n);
    for (size_t r = 0; r < n; ++r)
      for (const GbnfSequence& alt : rules_[r])
        for (const auto& e : alt) {
          if (e.kind != GrammarElement::Kind::kRule) break;
          first[r].push_back(e.a);
          if (!nullable[e.a]) break;
        }
    std::vector<uint8_t> state(n, 0);  // 0 new, 1 on the path, 2 done
    for (size_t start = 0; start < n; ++start) {
      if (state[start]) continue;
      std::vector<std::pair<uint32_t, size_t>> path{{static_cast<uint32_t>(start), 0}};
      state[start] = 1;
      while (!path.empty()) {
        auto& [r, i] = path.back();
        if (i < first[r].size()) {
          const uint32_t s = first[r][i++];
          if (state[s] == 1) {
            Fail(origin_, ": rule '", names_[s],
                 "' is left-recursive (it can reach itself without matching a character; "
                 "x* and x+ need an x that cannot match the empty string)");
          }
          if (state[s] == 0) {
            state[s] = 1;
            path.push_back({s, 0});
          }
        } else {
          state[r] = 2;
          path.pop_back();
        }
      }
    }
  }

  std::string_view s_;
  std::string origin_;
  size_t pos_ = 0;
  std::map<std::string, uint32_t> index_;
  std::vector<std::string> names_;
  std::vector<GbnfAlternatives> rules_;
  std::vector<bool> defined_;
  std::vector<size_t> first_use_;
  std::vector<CodePointRange> ranges_;
  size_t total_ = 0;
  int generated_ = 0;
};

}  // namespace

Grammar ParseGbnf(std::string_view text, std::string_view origin) {
  return GbnfParser(text, origin).Parse();
}

}  // namespace elm
