// Loading HF tokenizer.json (+ tokenizer_config.json) into TokenizerData. Only the parts of the
// format a Llama-2 style BPE tokenizer uses are accepted; anything else is rejected with an error
// naming the field, rather than silently producing different ids than HF would.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"
#include "text/utf8.h"
#include "tokenizer/tokenizer_data.h"

namespace elm::tokenizer_internal {
namespace {

using nlohmann::json;

// Error reporting bound to one file: Fail("model.vocab", "expected an object").
struct Source {
  std::string_view origin;

  template <typename... Args>
  [[noreturn]] void Fail(std::string_view field, const Args&... args) const {
    elm::Fail(origin, ": ", field, ": ", args...);
  }

  const json& Get(const json& obj, std::string_view path, const char* key) const {
    const auto it = obj.find(key);
    if (it == obj.end()) Fail(Join(path, key), "missing");
    return *it;
  }
  std::string String(const json& v, std::string_view field) const {
    if (!v.is_string()) Fail(field, "expected a string, got ", v.type_name());
    return v.get<std::string>();
  }
  bool Bool(const json& obj, std::string_view path, const char* key, bool fallback) const {
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) Fail(Join(path, key), "expected a boolean, got ", it->type_name());
    return it->get<bool>();
  }
  const json& Object(const json& v, std::string_view field) const {
    if (!v.is_object()) Fail(field, "expected an object, got ", v.type_name());
    return v;
  }
  const json& Array(const json& v, std::string_view field) const {
    if (!v.is_array()) Fail(field, "expected an array, got ", v.type_name());
    return v;
  }
  static std::string Join(std::string_view path, std::string_view key) {
    return path.empty() ? std::string(key) : std::string(path) + "." + std::string(key);
  }
  static std::string Index(std::string_view path, size_t i) {
    return std::string(path) + "[" + std::to_string(i) + "]";
  }
};

// Parses `text`; a syntax error, or a number the parser cannot hold (1e400), is an elm::Error
// naming the file and, for the latter, the field being read ("version", "model.vocab").
json ParseJson(std::string_view text, std::string_view origin) {
  std::vector<std::string> path;  // one entry per open object or array: its current key or ""
  auto track = [&path](int, json::parse_event_t event, json&) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        path.emplace_back();
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!path.empty()) path.pop_back();
        break;
      default:
        break;
    }
    return true;
  };
  auto field = [&path] {
    std::string f;
    for (const auto& k : path)
      if (!k.empty()) f += (f.empty() ? "" : ".") + k;
    return f.empty() ? std::string("(top level)") : f;
  };
  try {
    return json::parse(text.begin(), text.end(),
                       [&](int depth, json::parse_event_t event, json& parsed) {
                         if (event == json::parse_event_t::key && !path.empty())
                           path.back() = parsed.get<std::string>();
                         return track(depth, event, parsed);
                       });
  } catch (const json::parse_error& e) {
    Fail(origin, ": not valid JSON: ", e.what());
  } catch (const json::exception& e) {
    Fail(origin, ": ", field(), ": ", e.what());
  }
}

std::string TypeOf(const Source& src, const json& obj, std::string_view path) {
  return src.String(src.Get(obj, path, "type"), Source::Join(path, "type"));
}

// Byte-fallback tokens are spelled as HF formats them: "<0x" two upper-case hex digits ">".
std::string BytePiece(int b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "<0x%02X>", b);
  return buf;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The byte a piece stands for in HF's ByteFallback decoder (which accepts either case), or -1.
int ByteOfPiece(std::string_view p) {
  if (p.size() != 6 || !p.starts_with("<0x") || p[5] != '>') return -1;
  const int hi = HexDigit(p[3]), lo = HexDigit(p[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

void ReplaceAll(std::string* s, std::string_view pattern, std::string_view content) {
  if (pattern.empty() || s->find(pattern) == std::string::npos) return;
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = s->find(pattern, pos)) != std::string::npos; pos = hit + pattern.size()) {
    out.append(*s, pos, hit - pos);
    out.append(content);
  }
  out.append(*s, pos);
  *s = std::move(out);
}

// Pattern of a Replace normalizer or decoder: only {"String": "..."} (no regexes).
std::string ReplacePattern(const Source& src, const json& step, const std::string& path) {
  const json& pattern = src.Object(src.Get(step, path, "pattern"), path + ".pattern");
  if (pattern.contains("Regex")) src.Fail(path + ".pattern", "Regex patterns are not supported");
  std::string s =
      src.String(src.Get(pattern, path + ".pattern", "String"), path + ".pattern.String");
  if (s.empty()) src.Fail(path + ".pattern.String", "empty pattern");
  return s;
}

void ParseNormalizer(const Source& src, const json& n, const std::string& path,
                     std::vector<NormalizerOp>* ops) {
  if (n.is_null()) return;
  src.Object(n, path);
  const std::string type = TypeOf(src, n, path);
  if (type == "Sequence") {
    const std::string list = path + ".normalizers";
    const json& steps = src.Array(src.Get(n, path, "normalizers"), list);
    for (size_t i = 0; i < steps.size(); ++i)
      ParseNormalizer(src, steps[i], Source::Index(list, i), ops);
  } else if (type == "Prepend") {
    ops->push_back({NormalizerOp::Kind::kPrepend, "",
                    src.String(src.Get(n, path, "prepend"), path + ".prepend")});
  } else if (type == "Replace") {
    ops->push_back({NormalizerOp::Kind::kReplace, ReplacePattern(src, n, path),
                    src.String(src.Get(n, path, "content"), path + ".content")});
  } else {
    src.Fail(path + ".type", "unsupported normalizer \"", type,
             "\" (supported: Sequence, Prepend, Replace)");
  }
}

void ParseAddedTokens(const Source& src, const json& root, TokenizerData* d) {
  const auto it = root.find("added_tokens");
  if (it == root.end() || it->is_null()) return;
  const json& list = src.Array(*it, "added_tokens");
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string path = Source::Index("added_tokens", i);
    const json& t = src.Object(list[i], path);
    const json& id = src.Get(t, path, "id");
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > (1 << 24)) {
      src.Fail(path + ".id", "expected a non-negative integer id");
    }
    AddedToken tok{src.String(src.Get(t, path, "content"), path + ".content"), id.get<int>(),
                   src.Bool(t, path, "special", false)};
    if (tok.content.empty()) src.Fail(path + ".content", "empty token");
    if (!utf8::IsValid(tok.content)) src.Fail(path + ".content", "invalid UTF-8");
    for (const char* flag : {"lstrip", "rstrip", "single_word"}) {
      if (src.Bool(t, path, flag, false))
        src.Fail(Source::Join(path, flag), "only false is supported");
    }
    d->added.push_back(std::move(tok));
  }
}

void ParseModel(const Source& src, const json& root, TokenizerData* d) {
  const json& model = src.Object(src.Get(root, "", "model"), "model");
  if (model.contains("type") && TypeOf(src, model, "model") != "BPE") {
    src.Fail("model.type", "unsupported model \"", TypeOf(src, model, "model"), "\" (only BPE)");
  }
  const auto dropout = model.find("dropout");
  if (dropout != model.end() && !dropout->is_null() &&
      !(dropout->is_number() && dropout->get<double>() == 0.0)) {
    src.Fail("model.dropout", "BPE dropout is not supported");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const auto it = model.find(key);
    if (it != model.end() && !it->is_null() &&
        !(it->is_string() && it->get<std::string>().empty())) {
      src.Fail(Source::Join("model", key), "not supported");
    }
  }
  d->byte_fallback = src.Bool(model, "model", "byte_fallback", false);
  d->fuse_unk = src.Bool(model, "model", "fuse_unk", false);
  d->ignore_merges = src.Bool(model, "model", "ignore_merges", false);

  // Vocabulary: ids must be dense from 0 (added tokens may extend it).
  const json& vocab = src.Object(src.Get(model, "model", "vocab"), "model.vocab");
  if (vocab.empty()) src.Fail("model.vocab", "empty vocabulary");
  std::vector<std::string>& pieces = d->pieces;
  std::vector<uint8_t> seen;
  for (const auto& [piece, id] : vocab.items()) {
    const std::string field = "model.vocab[\"" + piece + "\"]";
    if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
        id.get<int64_t>() >= static_cast<int64_t>(vocab.size())) {
      src.Fail(field, "expected an integer id in [0, ", vocab.size(), ")");
    }
    const auto i = id.get<size_t>();
    if (pieces.size() <= i) {
      pieces.resize(vocab.size());
      seen.resize(vocab.size());
    }
    if (seen[i]) src.Fail(field, "id ", i, " is used twice");
    if (piece.empty() || !utf8::IsValid(piece)) src.Fail(field, "empty or invalid UTF-8 token");
    seen[i] = 1;
    pieces[i] = piece;
    d->piece_ids.emplace(piece, static_cast<int>(i));
  }

  const auto unk = model.find("unk_token");
  if (unk != model.end() && !unk->is_null()) {
    const std::string u = src.String(*unk, "model.unk_token");
    const auto it = d->piece_ids.find(u);
    if (it == d->piece_ids.end()) src.Fail("model.unk_token", "\"", u, "\" is not in model.vocab");
    d->model_unk_id = it->second;
  }

  // Initial symbols: single-character tokens, and the byte-fallback tokens.
  d->ascii_ids.fill(-1);
  d->byte_ids.fill(-1);
  for (size_t id = 0; id < pieces.size(); ++id) {
    const std::string& p = pieces[id];
    if (static_cast<size_t>(utf8::CharLength(p, 0)) != p.size()) continue;
    const char32_t cp = utf8::DecodeChar(p.data(), static_cast<int>(p.size()));
    if (cp < 128) {
      d->ascii_ids[cp] = static_cast<int32_t>(id);
    } else {
      d->char_ids.emplace(cp, static_cast<int32_t>(id));
    }
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = d->piece_ids.find(BytePiece(b));
    if (it != d->piece_ids.end()) d->byte_ids[static_cast<size_t>(b)] = it->second;
  }

  // Merges, either "left right" strings (tokenizers < 0.20) or [left, right] pairs.
  const json& merges = src.Array(src.Get(model, "model", "merges"), "model.merges");
  d->merges = bpe::MergeTable(static_cast<int32_t>(pieces.size()) - 1,
                              static_cast<uint32_t>(merges.size()));
  auto lookup = [&](const std::string& piece, const std::string& field) {
    const auto it = d->piece_ids.find(piece);
    if (it == d->piece_ids.end()) src.Fail(field, "unknown token \"", piece, "\"");
    return it->second;
  };
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string field = Source::Index("model.merges", i);
    const json& m = merges[i];
    std::string left, right;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        src.Fail(field, "expected \"left right\", got \"", s, "\"");
      }
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2) {
      left = src.String(m[0], field + "[0]");
      right = src.String(m[1], field + "[1]");
    } else {
      src.Fail(field, "expected a string or a pair of strings, got ", m.type_name());
    }
    const int a = lookup(left, field), b = lookup(right, field);
    const auto merged = d->piece_ids.find(left + right);
    if (merged == d->piece_ids.end()) {
      src.Fail(field, "merged token \"", left + right, "\" is not in model.vocab");
    }
    d->merges.Insert(a, b, static_cast<uint32_t>(i), merged->second);
  }
}

// Decides where the encoder may cut the text into independent words (see encoder.cc). A cut
// between two initial symbols x and y is exact iff no merge joins a token ending in x to a token
// starting with y: the first merge across the cut would have to be one. The argument reasons
// about characters, so it is only made when no merge involves byte-fallback or unknown tokens
// (whose pieces are not the characters they stand for).
void PlanWordSplitting(const json& merges_json, TokenizerData* d) {
  static constexpr std::string_view kWordStart = "\xE2\x96\x81";  // "▁"
  const auto start = d->piece_ids.find(std::string(kWordStart));
  if (start == d->piece_ids.end() || d->pieces.empty()) return;
  std::vector<uint8_t> opaque(d->pieces.size(), 0);
  for (int32_t id : d->byte_ids) {
    if (id >= 0) opaque[static_cast<size_t>(id)] = 1;
  }
  if (d->model_unk_id >= 0) opaque[static_cast<size_t>(d->model_unk_id)] = 1;
  // The unit (initial symbol) of a character, or -1 if it is not a single-character token.
  const auto unit = [d](std::string_view ch) -> int32_t {
    const char32_t cp = utf8::DecodeChar(ch.data(), static_cast<int>(ch.size()));
    if (cp < 128) return d->ascii_ids[cp];
    const auto it = d->char_ids.find(cp);
    return it == d->char_ids.end() ? -1 : it->second;
  };
  std::vector<std::string> joins;
  bpe::MergeTable joinable(static_cast<int32_t>(d->pieces.size()) - 1,
                           static_cast<uint32_t>(merges_json.size()));
  uint32_t count = 0;
  for (const json& m : merges_json) {
    std::string left, right;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      left = s.substr(0, s.find(' '));
      right = s.substr(s.find(' ') + 1);
    } else {
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    }
    if (opaque[static_cast<size_t>(d->piece_ids.at(left))] ||
        opaque[static_cast<size_t>(d->piece_ids.at(right))]) {
      return;
    }
    size_t last = left.size() - 1;
    while (last > 0 && (static_cast<uint8_t>(left[last]) & 0xC0) == 0x80) --last;
    const std::string last_char = left.substr(last);
    const std::string first_char = right.substr(0, static_cast<size_t>(utf8::CharLength(right, 0)));
    // A merge whose outer characters are not tokens can never apply: its sides cannot be built.
    const int32_t u = unit(last_char), v = unit(first_char);
    if (u >= 0 && v >= 0) joinable.Insert(u, v, count++, 0);
    if (right.starts_with(kWordStart) &&
        std::find(joins.begin(), joins.end(), last_char) == joins.end()) {
      joins.push_back(last_char);
    }
  }
  d->split_words = true;
  d->word_start = kWordStart;
  d->joins_word_start = std::move(joins);
  d->joinable_units = std::move(joinable);
  // An ASCII character outside the vocabulary becomes its byte token, which no merge involves,
  // so it is a word of its own. (Without byte fallback it would become <unk>, which fuse_unk may
  // glue to a neighbouring <unk>: no cut then.)
  d->split_class.fill(TokenizerData::kSplitNone);
  for (int c = 0; c < 128; ++c) {
    const auto i = static_cast<size_t>(c);
    if (d->ascii_ids[i] < 0 && d->byte_fallback && d->byte_ids[i] >= 0) {
      d->split_class[i] = TokenizerData::kSplitOpaque;
    }
  }
  d->split_class[static_cast<uint8_t>(kWordStart[0])] = TokenizerData::kSplitWordStart;
  d->split_swar = true;
  for (int c = 0; c < 128; ++c) {
    if (d->split_class[static_cast<size_t>(c)] != TokenizerData::kSplitNone && c > 0x20 &&
        c != 0x7F) {
      d->split_swar = false;
    }
  }
}

void ParseDecoder(const Source& src, const json& root, TokenizerData* d) {
  const json& dec = src.Get(root, "", "decoder");
  if (dec.is_null()) src.Fail("decoder", "a decoder is required (null is not supported)");
  src.Object(dec, "decoder");
  std::vector<std::pair<const json*, std::string>> steps;
  if (TypeOf(src, dec, "decoder") == "Sequence") {
    const json& list = src.Array(src.Get(dec, "decoder", "decoders"), "decoder.decoders");
    for (size_t i = 0; i < list.size(); ++i) {
      steps.emplace_back(&src.Object(list[i], Source::Index("decoder.decoders", i)),
                         Source::Index("decoder.decoders", i));
    }
  } else {
    steps.emplace_back(&dec, "decoder");
  }
  std::vector<std::pair<std::string, std::string>> replaces;
  bool byte_fallback = false, fuse = false, strip = false;
  for (const auto& [step, path] : steps) {
    const std::string type = TypeOf(src, *step, path);
    if (strip) src.Fail(path, "Strip must be the last decoder");
    if (type == "Replace") {
      if (byte_fallback || fuse) src.Fail(path, "Replace must come before ByteFallback and Fuse");
      replaces.emplace_back(ReplacePattern(src, *step, path),
                            src.String(src.Get(*step, path, "content"), path + ".content"));
    } else if (type == "ByteFallback") {
      if (fuse) src.Fail(path, "ByteFallback must come before Fuse");
      byte_fallback = true;
    } else if (type == "Fuse") {
      fuse = true;
    } else if (type == "Strip") {
      if (!fuse) src.Fail(path, "Strip is only supported after Fuse");
      const std::string content = src.String(src.Get(*step, path, "content"), path + ".content");
      if (content.empty() || static_cast<size_t>(utf8::CharLength(content, 0)) != content.size()) {
        src.Fail(path + ".content", "expected a single character");
      }
      const json& start = src.Get(*step, path, "start");
      const json& stop = src.Get(*step, path, "stop");
      if (!start.is_number_unsigned() || start.get<int64_t>() > 64) {
        src.Fail(path + ".start", "expected a small non-negative integer");
      }
      if (!stop.is_number_integer() || stop.get<int64_t>() != 0) {
        src.Fail(path + ".stop", "only 0 is supported");
      }
      d->strip_content = content;
      d->strip_start = start.get<int>();
      strip = true;
    } else {
      src.Fail(path + ".type", "unsupported decoder \"", type,
               "\" (supported: Sequence, Replace, ByteFallback, Fuse, Strip)");
    }
  }
  d->texts.resize(d->pieces.size());
  d->byte_of.assign(d->pieces.size(), -1);
  for (size_t id = 0; id < d->pieces.size(); ++id) {
    std::string text = d->pieces[id];
    for (const auto& [pattern, content] : replaces) ReplaceAll(&text, pattern, content);
    if (byte_fallback) d->byte_of[id] = static_cast<int16_t>(ByteOfPiece(text));
    d->texts[id] = std::move(text);
  }
}

// The post-processor is consulted only for BOS: [SpecialToken?, Sequence A] is supported.
void ParsePostProcessor(const Source& src, const json& root, std::optional<int>* template_bos,
                        const TokenizerData& d) {
  const auto it = root.find("post_processor");
  if (it == root.end() || it->is_null()) return;
  const json& pp = src.Object(*it, "post_processor");
  const std::string type = TypeOf(src, pp, "post_processor");
  if (type != "TemplateProcessing") {
    src.Fail("post_processor.type", "unsupported post-processor \"", type,
             "\" (only TemplateProcessing)");
  }
  const json& single = src.Array(src.Get(pp, "post_processor", "single"), "post_processor.single");
  const bool ok =
      (single.size() == 1 && single[0].contains("Sequence")) ||
      (single.size() == 2 && single[0].contains("SpecialToken") && single[1].contains("Sequence"));
  if (!ok) {
    src.Fail("post_processor.single", "only [SpecialToken, Sequence] or [Sequence] is supported");
  }
  *template_bos = -1;
  if (single.size() == 2) {
    const json& tok =
        src.Object(single[0]["SpecialToken"], "post_processor.single[0].SpecialToken");
    const std::string name = src.String(src.Get(tok, "post_processor.single[0].SpecialToken", "id"),
                                        "post_processor.single[0].SpecialToken.id");
    const auto id = d.piece_ids.find(name);
    if (id == d.piece_ids.end()) {
      src.Fail("post_processor.single[0].SpecialToken.id", "unknown token \"", name, "\"");
    }
    *template_bos = id->second;
  }
}

// A special token named in tokenizer_config.json: a string or {"content": "..."}.
std::optional<int> ConfigToken(const Source& src, const json& cfg, const char* key,
                               const TokenizerData& d) {
  const auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  const json& content = it->is_object() ? src.Get(*it, key, "content") : *it;
  const std::string name = src.String(content, key);
  const auto id = d.piece_ids.find(name);
  if (id == d.piece_ids.end()) src.Fail(key, "unknown token \"", name, "\"");
  return id->second;
}

std::optional<int> PieceId(const TokenizerData& d, const char* piece) {
  const auto it = d.piece_ids.find(piece);
  return it == d.piece_ids.end() ? std::nullopt : std::optional<int>(it->second);
}

}  // namespace

std::shared_ptr<const TokenizerData> ParseTokenizerJson(std::string_view json_text,
                                                        std::string_view origin,
                                                        std::string_view config_text,
                                                        std::string_view config_origin) {
  const Source src{origin};
  const json root = ParseJson(json_text, origin);
  src.Object(root, "(top level)");
  auto d = std::make_shared<TokenizerData>();

  ParseModel(src, root, d.get());
  ParseAddedTokens(src, root, d.get());
  // Added tokens override or extend the model vocabulary; every id must end up defined.
  const size_t model_size = d->pieces.size();
  for (const AddedToken& t : d->added) {
    const auto id = static_cast<size_t>(t.id);
    if (id >= d->pieces.size()) d->pieces.resize(id + 1);
    d->pieces[id] = t.content;
    d->piece_ids[t.content] = t.id;
    d->added_first_byte[static_cast<uint8_t>(t.content[0])] = true;
  }
  d->special.assign(d->pieces.size(), 0);
  for (const AddedToken& t : d->added) d->special[static_cast<size_t>(t.id)] = t.special ? 1 : 0;
  for (size_t id = model_size; id < d->pieces.size(); ++id) {
    if (d->pieces[id].empty()) src.Fail("added_tokens", "no token has id ", id);
  }

  if (const auto norm = root.find("normalizer"); norm != root.end()) {
    ParseNormalizer(src, *norm, "normalizer", &d->normalizer);
  }
  const auto pre = root.find("pre_tokenizer");
  if (pre != root.end() && !pre->is_null()) {
    const std::string type = pre->is_object() && pre->contains("type") && (*pre)["type"].is_string()
                                 ? (*pre)["type"].get<std::string>()
                                 : pre->type_name();
    src.Fail("pre_tokenizer", "unsupported pre-tokenizer \"", type, "\" (only null is supported)");
  }
  PlanWordSplitting(root["model"]["merges"], d.get());
  ParseDecoder(src, root, d.get());
  std::optional<int> template_bos;
  ParsePostProcessor(src, root, &template_bos, *d);

  // tokenizer_config.json has the last word on BOS; without it the post-processor decides, and
  // without either we assume Llama-2's convention (BOS added).
  std::optional<bool> config_add_bos;
  std::optional<int> config_bos, config_eos, config_unk;
  if (!config_text.empty()) {
    const Source csrc{config_origin};
    const json cfg = ParseJson(config_text, config_origin);
    csrc.Object(cfg, "(top level)");
    if (cfg.contains("add_bos_token")) config_add_bos = csrc.Bool(cfg, "", "add_bos_token", true);
    config_bos = ConfigToken(csrc, cfg, "bos_token", *d);
    config_eos = ConfigToken(csrc, cfg, "eos_token", *d);
    config_unk = ConfigToken(csrc, cfg, "unk_token", *d);
  }
  d->bos_id = config_bos.value_or(template_bos.value_or(-1) >= 0 ? *template_bos
                                                                 : PieceId(*d, "<s>").value_or(-1));
  d->eos_id = config_eos.value_or(PieceId(*d, "</s>").value_or(-1));
  d->unk_id = d->model_unk_id >= 0 ? d->model_unk_id
                                   : config_unk.value_or(PieceId(*d, "<unk>").value_or(-1));
  d->add_bos = config_add_bos.value_or(template_bos.has_value() ? *template_bos >= 0 : true);
  if (d->add_bos && d->bos_id < 0) {
    src.Fail("post_processor", "BOS is to be added but the tokenizer has no BOS token");
  }
  return d;
}

}  // namespace elm::tokenizer_internal
