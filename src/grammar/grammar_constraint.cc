#include "grammar/grammar_constraint.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <map>

#include "base/error.h"

namespace elm {

namespace {

// A vocabulary piece as bytes of text: "▁" (U+2581) is a space, "<0xNN>" is byte NN.
std::string PieceBytes(const std::string& piece) {
  unsigned byte = 0;
  if (piece.size() == 6 && piece.starts_with("<0x") && piece.back() == '>' &&
      std::sscanf(piece.c_str() + 3, "%2x", &byte) == 1)
    return std::string(1, static_cast<char>(byte));
  static const std::string kSpaceMarker = "\xE2\x96\x81";
  std::string out;
  for (size_t i = 0; i < piece.size();) {
    if (piece.compare(i, kSpaceMarker.size(), kSpaceMarker) == 0) {
      out.push_back(' ');
      i += kSpaceMarker.size();
    } else {
      out.push_back(piece[i++]);
    }
  }
  return out;
}

}  // namespace

std::shared_ptr<const TokenTrie> TokenTrie::FromTokenizer(const Tokenizer& tok) {
  auto t = std::make_shared<TokenTrie>();
  t->vocab_size_ = tok.vocab_size();
  t->eos_id_ = tok.eos_id();
  if (const auto space = tok.TokenId("\xE2\x96\x81"))
    t->strip_leading_space_ = tok.Decode(std::vector<int>{*space}).empty();
  t->bytes_.resize(static_cast<size_t>(t->vocab_size_));
  // A pointer trie first, then laid out flat, children in byte order.
  struct Build {
    std::map<uint8_t, uint32_t> children;
    std::vector<int> ids;
  };
  std::vector<Build> b(1);
  for (int id = 0; id < t->vocab_size_; ++id) {
    if (tok.IsSpecial(id)) continue;
    std::string bytes = PieceBytes(tok.Piece(id));
    if (bytes.empty()) continue;
    uint32_t n = 0;
    for (char c : bytes) {
      const auto byte = static_cast<uint8_t>(c);
      const auto it = b[n].children.find(byte);
      if (it != b[n].children.end()) {
        n = it->second;
      } else {
        const auto child = static_cast<uint32_t>(b.size());
        b[n].children.emplace(byte, child);
        b.emplace_back();
        n = child;
      }
    }
    b[n].ids.push_back(id);
    t->bytes_[static_cast<size_t>(id)] = std::move(bytes);
  }
  t->nodes.resize(b.size());
  for (size_t n = 0; n < b.size(); ++n) {
    Node& node = t->nodes[n];
    node.first_edge = static_cast<uint32_t>(t->edges.size());
    node.n_edges = static_cast<uint32_t>(b[n].children.size());
    for (const auto& [byte, child] : b[n].children) t->edges.push_back({byte, child});
    node.first_token = static_cast<uint32_t>(t->tokens.size());
    node.n_tokens = static_cast<uint32_t>(b[n].ids.size());
    t->tokens.insert(t->tokens.end(), b[n].ids.begin(), b[n].ids.end());
  }
  return t;
}

GrammarConstraint::GrammarConstraint(std::shared_ptr<const Grammar> grammar,
                                     std::shared_ptr<const TokenTrie> vocab, bool continuation)
    : grammar_(std::move(grammar)), vocab_(std::move(vocab)), matcher_(*grammar_) {
  strip_start_ = !continuation && vocab_->strip_leading_space();
  current_ = Intern(matcher_.Initial());
}

int32_t GrammarConstraint::Intern(GrammarState&& s) {
  std::string key = s.Key();
  const auto it = state_ids_.find(key);
  if (it != state_ids_.end()) return it->second;
  const auto id = static_cast<int32_t>(states_.size());
  states_.push_back(std::move(s));
  state_ids_.emplace(std::move(key), id);
  return id;
}

int32_t GrammarConstraint::Step(int32_t state, uint8_t byte) {
  const uint64_t key = static_cast<uint64_t>(state) << 8 | byte;
  const auto it = steps_.find(key);
  if (it != steps_.end()) return it->second;
  GrammarState next;
  int32_t id = -1;
  if (matcher_.Advance(states_[static_cast<size_t>(state)], byte, next))
    id = Intern(std::move(next));
  steps_.emplace(key, id);
  return id;
}

void GrammarConstraint::ResetTables() {
  GrammarState cur = std::move(states_[static_cast<size_t>(current_)]);
  states_.clear();
  state_ids_.clear();
  steps_.clear();
  masks_.clear();
  current_ = Intern(std::move(cur));
}

void GrammarConstraint::Walk(uint32_t node, int32_t state, bool strip, Bits& bits) {
  const TokenTrie& v = *vocab_;
  const TokenTrie::Node& nd = v.nodes[node];
  for (uint32_t e = nd.first_edge; e < nd.first_edge + nd.n_edges; ++e) {
    const TokenTrie::Edge edge = v.edges[e];
    // The stripped leading space leaves the grammar state as it is; only one is stripped.
    const bool stripped = strip && edge.byte == ' ';
    const int32_t next = stripped ? state : Step(state, edge.byte);
    if (next < 0) continue;
    const TokenTrie::Node& child = v.nodes[edge.child];
    for (uint32_t k = child.first_token; k < child.first_token + child.n_tokens; ++k) {
      const auto id = static_cast<uint32_t>(v.tokens[k]);
      bits[id >> 6] |= uint64_t{1} << (id & 63);
    }
    if (child.n_edges > 0) Walk(edge.child, next, false, bits);
  }
}

const GrammarConstraint::Bits& GrammarConstraint::CurrentMask() {
  if (states_.size() > kMaxInternedGrammarStates || masks_.size() >= kMaxCachedGrammarMasks)
    ResetTables();
  const bool strip = at_start_ && strip_start_;
  const uint64_t key = static_cast<uint64_t>(current_) << 1 | (strip ? 1 : 0);
  const auto it = masks_.find(key);
  if (it != masks_.end()) return it->second;
  Bits bits((static_cast<size_t>(vocab_->vocab_size()) + 63) / 64, 0);
  Walk(0, current_, strip, bits);
  return masks_.emplace(key, std::move(bits)).first->second;
}

void GrammarConstraint::Mask(std::span<float> logits) {
  const Bits& bits = CurrentMask();
  const int eos = vocab_->eos_id();
  const bool can_end = GrammarMatcher::CanEnd(states_[static_cast<size_t>(current_)]);
  bool any = can_end;
  const size_t n = std::min(logits.size(), static_cast<size_t>(vocab_->vocab_size()));
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  for (size_t w = 0; w * 64 < n; ++w) {
    const uint64_t word = bits[w];
    const size_t end = std::min(n, w * 64 + 64);
    if (word == 0) {
      for (size_t i = w * 64; i < end; ++i) logits[i] = kNegInf;
      continue;
    }
    any = true;
    if (word == ~uint64_t{0}) continue;
    for (size_t i = w * 64; i < end; ++i)
      if (!((word >> (i & 63)) & 1)) logits[i] = kNegInf;
  }
  for (size_t i = n; i < logits.size(); ++i) logits[i] = kNegInf;
  // EOS where the text may end; and when nothing else is possible (a grammar that cannot go on
  // with this vocabulary), so the reply ends rather than the sampler drawing an impossible token.
  if (eos >= 0 && static_cast<size_t>(eos) < logits.size() && (can_end || !any) &&
      logits[static_cast<size_t>(eos)] == kNegInf)
    logits[static_cast<size_t>(eos)] = 0.0f;
}

void GrammarConstraint::Accept(int id) {
  if (id == vocab_->eos_id()) return;
  if (id < 0 || id >= vocab_->vocab_size()) Fail("grammar: token id ", id, " is out of range");
  std::string_view bytes = vocab_->TokenBytes(id);
  if (bytes.empty()) Fail("grammar: token ", id, " has no text the grammar can take");
  if (at_start_ && strip_start_ && bytes.front() == ' ') bytes.remove_prefix(1);
  int32_t next = current_;
  for (char c : bytes)
    if (next >= 0) next = Step(next, static_cast<uint8_t>(c));
  if (next < 0)
    Fail("grammar: token ", id, " (\"", vocab_->TokenBytes(id), "\") does not follow \"", text_,
         "\"");
  current_ = next;
  text_ += bytes;
  at_start_ = false;
}

bool GrammarConstraint::Complete() const {
  return GrammarMatcher::MustEnd(states_[static_cast<size_t>(current_)]);
}

std::vector<int> GrammarConstraint::AllowedTokens() {
  const Bits& bits = CurrentMask();
  std::vector<int> out;
  for (int id = 0; id < vocab_->vocab_size(); ++id)
    if ((bits[static_cast<size_t>(id) >> 6] >> (id & 63)) & 1) out.push_back(id);
  if (GrammarMatcher::CanEnd(states_[static_cast<size_t>(current_)]) && vocab_->eos_id() >= 0) {
    out.push_back(vocab_->eos_id());
    std::sort(out.begin(), out.end());
  }
  return out;
}

}  // namespace elm
