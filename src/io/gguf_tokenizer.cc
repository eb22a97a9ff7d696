#include "io/gguf_tokenizer.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "base/error.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"

namespace elm {
namespace {
using ojson = nlohmann::ordered_json;

constexpr float kWhitespaceScore = -1e9f;

bool IsBytePiece(const std::string& p) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); };
  return p.size() == 6 && p.compare(0, 3, "<0x") == 0 && hex(p[3]) && hex(p[4]) && p[5] == '>';
}

// "▁" (U+2581) repeated one or more times: SentencePiece gives these runs of spaces the lowest
// score so that they are merged last.
bool IsWhitespaceRun(const std::string& p) {
  static const std::string kSpace = "\xE2\x96\x81";
  if (p.empty() || p.size() % kSpace.size() != 0) return false;
  for (size_t i = 0; i < p.size(); i += kSpace.size())
    if (p.compare(i, kSpace.size(), kSpace) != 0) return false;
  return true;
}

std::vector<float> ScoresFor(const std::vector<std::string>& tokens,
                             const std::vector<int32_t>& types) {
  std::vector<float> scores(tokens.size(), 0.0f);
  int64_t rank = 0;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (types[i] != kTokenNormal) continue;
    scores[i] = IsWhitespaceRun(tokens[i]) ? kWhitespaceScore : -static_cast<float>(rank);
    ++rank;
  }
  return scores;
}

int OptionalId(const GgufFile& f, const std::string& key, size_t n) {
  if (f.Find(key) == nullptr) return -1;
  const int64_t id = f.GetInt(key);
  if (id < 0 || static_cast<size_t>(id) >= n)
    Fail(f.origin(), ": key '", key, "' is ", id, ", outside the vocabulary of ", n, " tokens");
  return static_cast<int>(id);
}

bool OptionalBool(const GgufFile& f, const std::string& key, bool def) {
  return f.Find(key) == nullptr ? def : f.GetBool(key);
}

// Byte offsets of UTF-8 character starts inside `s` (excluding 0 and s.size()): the places
// Python's str slicing can cut.
std::vector<size_t> CharBoundaries(const std::string& s) {
  std::vector<size_t> out;
  for (size_t i = 1; i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) out.push_back(i);
  return out;
}

ojson AddedToken(int id, const std::string& content, int32_t type) {
  ojson t;
  t["id"] = id;
  t["content"] = content;
  t["single_word"] = false;
  t["lstrip"] = false;
  t["rstrip"] = false;
  t["normalized"] = type == kTokenUserDefined;
  t["special"] = type != kTokenUserDefined;
  return t;
}

}  // namespace

GgufVocab VocabFromTokenizer(const Tokenizer& tok) {
  GgufVocab v;
  const int n = tok.vocab_size();
  v.tokens.reserve(static_cast<size_t>(n));
  v.types.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    v.tokens.push_back(tok.Piece(i));
    int32_t type = kTokenNormal;
    if (i == tok.unk_id())
      type = kTokenUnknown;
    else if (tok.IsSpecial(i))
      type = kTokenControl;
    else if (IsBytePiece(v.tokens.back()))
      type = kTokenByte;
    v.types.push_back(type);
  }
  v.scores = ScoresFor(v.tokens, v.types);
  v.bos = tok.bos_id();
  v.eos = tok.eos_id();
  v.unk = tok.unk_id();
  v.add_bos = tok.add_bos();
  v.add_eos = false;
  return v;
}

std::optional<GgufVocab> VocabFromGguf(const GgufFile& f) {
  if (f.Find("tokenizer.ggml.tokens") == nullptr) return std::nullopt;
  const std::string model =
      f.Find("tokenizer.ggml.model") ? f.GetString("tokenizer.ggml.model") : "llama";
  if (model != "llama")
    Fail(f.origin(), ": key 'tokenizer.ggml.model' is '", model,
         "'; elm reads SentencePiece ('llama') vocabularies");
  GgufVocab v;
  const GgufValue& tokens = f.GetArray("tokenizer.ggml.tokens", GgufType::kString);
  const size_t n = tokens.size();
  if (n == 0) Fail(f.origin(), ": key 'tokenizer.ggml.tokens' is empty");
  v.tokens.reserve(n);
  for (size_t i = 0; i < n; ++i) v.tokens.emplace_back(tokens.StrAt(i));
  if (f.Find("tokenizer.ggml.token_type")) {
    const GgufValue& types = f.GetArray("tokenizer.ggml.token_type", GgufType::kI32);
    if (types.size() != n)
      Fail(f.origin(), ": key 'tokenizer.ggml.token_type' has ", types.size(), " entries for ", n,
           " tokens");
    for (size_t i = 0; i < n; ++i) {
      const int64_t type = types.At(i).AsInt();
      if (type < 0 || type > kTokenByte)
        Fail(f.origin(), ": key 'tokenizer.ggml.token_type' holds unknown type ", type);
      v.types.push_back(static_cast<int32_t>(type));
    }
  } else {
    v.types.assign(n, kTokenNormal);
  }
  if (f.Find("tokenizer.ggml.scores")) {
    const GgufValue& scores = f.GetArray("tokenizer.ggml.scores", GgufType::kF32);
    if (scores.size() != n)
      Fail(f.origin(), ": key 'tokenizer.ggml.scores' has ", scores.size(), " entries for ", n,
           " tokens");
    for (size_t i = 0; i < n; ++i) v.scores.push_back(static_cast<float>(scores.At(i).AsDouble()));
  } else {
    v.scores.assign(n, 0.0f);
  }
  v.bos = OptionalId(f, "tokenizer.ggml.bos_token_id", n);
  v.eos = OptionalId(f, "tokenizer.ggml.eos_token_id", n);
  v.unk = OptionalId(f, "tokenizer.ggml.unknown_token_id", n);
  v.pad = OptionalId(f, "tokenizer.ggml.padding_token_id", n);
  v.add_bos = OptionalBool(f, "tokenizer.ggml.add_bos_token", true);
  v.add_eos = OptionalBool(f, "tokenizer.ggml.add_eos_token", false);
  if (f.Find("tokenizer.huggingface.json")) v.hf_json = f.GetString("tokenizer.huggingface.json");
  if (f.Find("tokenizer.chat_template")) v.chat_template = f.GetString("tokenizer.chat_template");
  return v;
}

void AddVocabToGguf(GgufWriter& w, const GgufVocab& v) {
  ELM_CHECK(v.scores.size() == v.tokens.size() && v.types.size() == v.tokens.size());
  w.Set("tokenizer.ggml.model", GgufValue::String("llama"));
  w.Set("tokenizer.ggml.pre", GgufValue::String("default"));
  w.Set("tokenizer.ggml.tokens", GgufValue::StringArray(v.tokens));
  w.Set("tokenizer.ggml.scores", GgufValue::F32Array(v.scores));
  w.Set("tokenizer.ggml.token_type", GgufValue::I32Array({v.types.begin(), v.types.end()}));
  if (v.bos >= 0)
    w.Set("tokenizer.ggml.bos_token_id", GgufValue::U32(static_cast<uint32_t>(v.bos)));
  if (v.eos >= 0)
    w.Set("tokenizer.ggml.eos_token_id", GgufValue::U32(static_cast<uint32_t>(v.eos)));
  if (v.unk >= 0)
    w.Set("tokenizer.ggml.unknown_token_id", GgufValue::U32(static_cast<uint32_t>(v.unk)));
  if (v.pad >= 0)
    w.Set("tokenizer.ggml.padding_token_id", GgufValue::U32(static_cast<uint32_t>(v.pad)));
  w.Set("tokenizer.ggml.add_bos_token", GgufValue::Bool(v.add_bos));
  w.Set("tokenizer.ggml.add_eos_token", GgufValue::Bool(v.add_eos));
  if (!v.chat_template.empty())
    w.Set("tokenizer.chat_template", GgufValue::String(v.chat_template));
  if (!v.hf_json.empty()) w.Set("tokenizer.huggingface.json", GgufValue::String(v.hf_json));
}

std::string TokenizerJsonFromVocab(const GgufVocab& v) {
  const size_t n = v.tokens.size();
  std::unordered_map<std::string, int> ids;
  ids.reserve(n);
  for (size_t i = 0; i < n; ++i) ids.emplace(v.tokens[i], static_cast<int>(i));

  struct Merge {
    int left, right;
    float score;
  };
  std::vector<Merge> merges;
  for (size_t i = 0; i < n; ++i) {
    const std::string& piece = v.tokens[i];
    for (size_t cut : CharBoundaries(piece)) {
      const auto l = ids.find(piece.substr(0, cut));
      if (l == ids.end()) continue;
      const auto r = ids.find(piece.substr(cut));
      if (r == ids.end()) continue;
      merges.push_back({l->second, r->second, v.scores[i]});
    }
  }
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.left != b.left) return a.left < b.left;
    return a.right < b.right;
  });

  ojson j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  ojson added = ojson::array();
  bool byte_fallback = false;
  for (size_t i = 0; i < n; ++i) {
    const int32_t t = v.types[i];
    if (t == kTokenControl || t == kTokenUnknown || t == kTokenUserDefined)
      added.push_back(AddedToken(static_cast<int>(i), v.tokens[i], t));
    byte_fallback |= t == kTokenByte;
  }
  j["added_tokens"] = added;
  const std::string space = "\xE2\x96\x81";
  j["normalizer"] = {{"type", "Sequence"},
                     {"normalizers",
                      {{{"type", "Prepend"}, {"prepend", space}},
                       {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", space}}}}};
  j["pre_tokenizer"] = nullptr;
  ojson pp;
  pp["type"] = "TemplateProcessing";
  auto seq = [](const char* id, int type_id) {
    ojson e;
    e["Sequence"]["id"] = id;
    e["Sequence"]["type_id"] = type_id;
    return e;
  };
  pp["single"] = ojson::array();
  pp["pair"] = ojson::array();
  pp["special_tokens"] = ojson::object();
  if (v.add_bos && v.bos >= 0) {
    const std::string& bos = v.tokens[static_cast<size_t>(v.bos)];
    auto special = [&](int type_id) {
      ojson e;
      e["SpecialToken"]["id"] = bos;
      e["SpecialToken"]["type_id"] = type_id;
      return e;
    };
    pp["single"].push_back(special(0));
    pp["pair"].push_back(special(0));
    pp["pair"].push_back(seq("A", 0));
    pp["pair"].push_back(special(1));
    pp["pair"].push_back(seq("B", 1));
    ojson st;
    st["id"] = bos;
    st["ids"] = ojson::array({v.bos});
    st["tokens"] = ojson::array({bos});
    pp["special_tokens"][bos] = st;
  } else {
    pp["pair"].push_back(seq("A", 0));
    pp["pair"].push_back(seq("B", 1));
  }
  pp["single"].push_back(seq("A", 0));
  j["post_processor"] = pp;
  j["decoder"] = {{"type", "Sequence"},
                  {"decoders",
                   {{{"type", "Replace"}, {"pattern", {{"String", space}}}, {"content", " "}},
                    {{"type", "ByteFallback"}},
                    {{"type", "Fuse"}},
                    {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  ojson model;
  model["type"] = "BPE";
  model["dropout"] = nullptr;
  model["unk_token"] = v.unk >= 0 ? ojson(v.tokens[static_cast<size_t>(v.unk)]) : ojson(nullptr);
  model["continuing_subword_prefix"] = nullptr;
  model["end_of_word_suffix"] = nullptr;
  model["fuse_unk"] = true;
  model["byte_fallback"] = byte_fallback;
  ojson vocab = ojson::object();
  for (size_t i = 0; i < n; ++i) vocab[v.tokens[i]] = static_cast<int>(i);
  model["vocab"] = std::move(vocab);
  ojson ms = ojson::array();
  for (const auto& m : merges) {
    const std::string& l = v.tokens[static_cast<size_t>(m.left)];
    const std::string& r = v.tokens[static_cast<size_t>(m.right)];
    // The "left right" form cannot hold a piece with a space; the pair form can.
    if (l.find(' ') == std::string::npos && r.find(' ') == std::string::npos)
      ms.push_back(l + " " + r);
    else
      ms.push_back({l, r});
  }
  model["merges"] = std::move(ms);
  j["model"] = std::move(model);
  return j.dump(2, ' ', false, ojson::error_handler_t::replace);
}

std::string TokenizerConfigJsonFromVocab(const GgufVocab& v) {
  ojson j;
  j["add_bos_token"] = v.add_bos;
  j["add_eos_token"] = v.add_eos;
  ojson decoder = ojson::object();
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    const int32_t t = v.types[i];
    if (t != kTokenControl && t != kTokenUnknown && t != kTokenUserDefined) continue;
    ojson e = AddedToken(static_cast<int>(i), v.tokens[i], t);
    e.erase("id");
    decoder[std::to_string(i)] = e;
  }
  j["added_tokens_decoder"] = decoder;
  auto piece = [&](int id) {
    return id >= 0 ? ojson(v.tokens[static_cast<size_t>(id)]) : ojson(nullptr);
  };
  j["bos_token"] = piece(v.bos);
  j["eos_token"] = piece(v.eos);
  j["unk_token"] = piece(v.unk);
  j["pad_token"] = piece(v.pad);
  j["clean_up_tokenization_spaces"] = false;
  j["legacy"] = true;
  j["sp_model_kwargs"] = ojson::object();
  j["spaces_between_special_tokens"] = false;
  j["tokenizer_class"] = "LlamaTokenizer";
  j["use_default_system_prompt"] = false;
  return j.dump(2, ' ', false, ojson::error_handler_t::replace);
}

std::optional<Tokenizer> TokenizerFromGguf(const GgufFile& f) {
  const auto v = VocabFromGguf(f);
  if (!v) return std::nullopt;
  const std::string config = TokenizerConfigJsonFromVocab(*v);
  if (!v->hf_json.empty())
    return Tokenizer::FromJson(v->hf_json, f.origin() + " (tokenizer.huggingface.json)", config);
  // The common case (llama.cpp's and elm's files for Apple's models): the built-in tokenizer,
  // already parsed, rather than rebuilding its 61k merges.
  static const GgufVocab builtin = VocabFromTokenizer(Tokenizer::Default());
  if (v->tokens == builtin.tokens && v->scores == builtin.scores && v->types == builtin.types &&
      v->bos == builtin.bos && v->eos == builtin.eos && v->unk == builtin.unk &&
      v->add_bos == builtin.add_bos)
    return Tokenizer::Default();
  return Tokenizer::FromJson(TokenizerJsonFromVocab(*v), f.origin() + " (tokenizer.ggml.*)",
                             config);
}

std::optional<Tokenizer> TokenizerFromGguf(const std::string& path) {
  const GgufFile f(path);
  return TokenizerFromGguf(f);
}

}  // namespace elm
