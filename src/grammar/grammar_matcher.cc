#include "grammar/grammar_matcher.h"

#include <algorithm>

#include "base/error.h"
#include "text/utf8.h"

namespace elm {

std::string GrammarState::Key() const {
  std::string k;
  k.reserve(16 + stacks.size() * 32);
  auto put = [&](uint32_t v) { k.append(reinterpret_cast<const char*>(&v), sizeof(v)); };
  put(partial);
  put(static_cast<uint32_t>(lead) | static_cast<uint32_t>(need) << 8);
  for (const auto& s : stacks) {
    put(static_cast<uint32_t>(s.size()));
    for (uint32_t e : s) put(e);
  }
  return k;
}

void GrammarMatcher::Expand(GrammarStack& stack, std::vector<GrammarStack>& out) const {
  for (;;) {
    if (stack.empty()) {
      out.push_back(stack);
      return;
    }
    const uint32_t top = stack.back();
    const GrammarElement& el = g_.elements[top];
    if (el.kind == GrammarElement::Kind::kEnd) {
      stack.pop_back();
      continue;
    }
    if (el.kind == GrammarElement::Kind::kChars) {
      out.push_back(stack);
      return;
    }
    // A reference: continue after it once the rule is matched (nothing to push when the rule ends
    // the alternative, so right recursion keeps the stack flat), then try each alternative.
    stack.pop_back();
    if (g_.elements[top + 1].kind != GrammarElement::Kind::kEnd) stack.push_back(top + 1);
    const auto& alts = g_.rule_alts[el.a];
    for (size_t i = 0; i + 1 < alts.size(); ++i) {
      GrammarStack copy = stack;
      copy.push_back(alts[i]);
      Expand(copy, out);
      if (out.size() > kMaxGrammarStacks * 4)
        Fail("the grammar is too ambiguous (more than ", kMaxGrammarStacks, " parse stacks)");
    }
    stack.push_back(alts.back());
  }
}

void GrammarMatcher::Normalize(std::vector<GrammarStack>& stacks) const {
  std::sort(stacks.begin(), stacks.end());
  stacks.erase(std::unique(stacks.begin(), stacks.end()), stacks.end());
  if (stacks.size() > kMaxGrammarStacks)
    Fail("the grammar is too ambiguous (more than ", kMaxGrammarStacks, " parse stacks)");
}

GrammarState GrammarMatcher::Initial() const {
  GrammarState s;
  // The root rule's alternatives, expanded as a reference to it would be.
  for (uint32_t alt : g_.rule_alts[g_.root]) {
    GrammarStack st{alt};
    Expand(st, s.stacks);
  }
  Normalize(s.stacks);
  return s;
}

bool GrammarMatcher::CanEnd(const GrammarState& s) {
  return s.need == 0 && !s.stacks.empty() && s.stacks.front().empty();
}

bool GrammarMatcher::Advance(const GrammarState& in, uint8_t byte, GrammarState& out) const {
  uint32_t cp;
  if (in.need == 0) {
    const int n = utf8::SequenceLength(byte);
    if (n == 0) return false;
    if (n > 1) {
      // The first byte of a longer character: keep the stacks that can match one of its code
      // points.
      const uint32_t bits = byte & (0xFF >> (n + 1));
      const int rest = 6 * (n - 1);
      const uint32_t lo = std::max<uint32_t>(bits << rest, n == 2   ? 0x80
                                                           : n == 3 ? 0x800
                                                                    : 0x10000);
      const uint32_t hi = std::min<uint32_t>((bits << rest) | ((1u << rest) - 1), 0x10FFFF);
      out.stacks.clear();
      for (const auto& st : in.stacks)
        if (!st.empty() && g_.MatchesSome(st.back(), lo, hi)) out.stacks.push_back(st);
      if (out.stacks.empty()) return false;
      out.partial = bits;
      out.lead = byte;
      out.need = static_cast<uint8_t>(n - 1);
      return true;
    }
    cp = byte;
  } else {
    if ((byte & 0xC0) != 0x80) return false;
    if (in.lead && !utf8::SecondByteOk(in.lead, byte)) return false;
    const uint32_t bits = (in.partial << 6) | (byte & 0x3F);
    if (in.need > 1) {
      const int rest = 6 * (in.need - 1);
      const uint32_t lo = bits << rest, hi = std::min<uint32_t>(lo | ((1u << rest) - 1), 0x10FFFF);
      out.stacks.clear();
      for (const auto& st : in.stacks)
        if (g_.MatchesSome(st.back(), lo, hi)) out.stacks.push_back(st);
      if (out.stacks.empty()) return false;
      out.partial = bits;
      out.lead = 0;
      out.need = static_cast<uint8_t>(in.need - 1);
      return true;
    }
    cp = bits;
  }
  std::vector<GrammarStack> next;
  for (const auto& st : in.stacks) {
    if (st.empty() || !g_.Matches(st.back(), cp)) continue;
    GrammarStack copy = st;
    copy.back() += 1;
    Expand(copy, next);
  }
  if (next.empty()) return false;
  Normalize(next);
  out.stacks = std::move(next);
  out.partial = 0;
  out.lead = 0;
  out.need = 0;
  return true;
}

bool GrammarMatcher::AdvanceAll(GrammarState& state, std::string_view bytes) const {
  GrammarState next;
  for (char c : bytes) {
    if (!Advance(state, static_cast<uint8_t>(c), next)) return false;
    std::swap(state, next);
  }
  return true;
}

bool GrammarMatcher::Accepts(std::string_view text) const {
  GrammarState s = Initial();
  return AdvanceAll(s, text) && CanEnd(s);
}

}  // namespace elm
