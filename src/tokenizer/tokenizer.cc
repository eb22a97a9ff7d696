// elm::Tokenizer: loading entry points, encoding (the work is in encoder.cc) and decoding.
#include "tokenizer/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/error.h"
#include "text/utf8.h"
#include "tokenizer/encoder.h"
#include "tokenizer/tokenizer_data.h"

namespace elm {

using tokenizer_internal::Encoder;
using tokenizer_internal::Normalize;
using tokenizer_internal::TokenizerData;

namespace {

void CheckUtf8(std::string_view text) {
  const size_t bad = utf8::FindInvalid(text);
  if (bad != utf8::kNotFound) Fail("invalid UTF-8 at byte ", bad);
}

int BosOrFail(const TokenizerData& d) {
  if (d.bos_id < 0) Fail("cannot add BOS: the tokenizer has no BOS token");
  return d.bos_id;
}

std::string ReadFile(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail("cannot open ", what, " ", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) Fail("cannot read ", what, " ", path);
  return std::move(ss).str();
}

}  // namespace

Tokenizer Tokenizer::FromJson(std::string_view json_text, std::string_view origin_for_errors,
                              std::string_view config_json_or_empty) {
  return Tokenizer(tokenizer_internal::ParseTokenizerJson(
      json_text, origin_for_errors, config_json_or_empty,
      std::string(origin_for_errors) + " (tokenizer_config.json)"));
}

Tokenizer Tokenizer::FromFile(const std::string& tokenizer_json_path) {
  const std::string json = ReadFile(tokenizer_json_path, "tokenizer file");
  const std::filesystem::path config_path =
      std::filesystem::path(tokenizer_json_path).parent_path() / "tokenizer_config.json";
  std::string config;
  std::error_code ec;
  if (std::filesystem::is_regular_file(config_path, ec)) {
    config = ReadFile(config_path.string(), "tokenizer config");
  }
  return Tokenizer(tokenizer_internal::ParseTokenizerJson(json, tokenizer_json_path, config,
                                                          config_path.string()));
}

std::vector<int> Tokenizer::Encode(std::string_view text, bool add_bos) const {
  CheckUtf8(text);
  std::vector<int> ids;
  ids.reserve(text.size() / 2 + 2);
  if (add_bos) ids.push_back(BosOrFail(*data_));
  Encoder(*data_, &ids).EncodeNormalized(Normalize(*data_, text));
  return ids;
}

std::vector<int> Tokenizer::EncodeWithSpecial(std::string_view text, bool add_bos) const {
  CheckUtf8(text);
  const TokenizerData& d = *data_;
  std::vector<int> ids;
  ids.reserve(text.size() / 2 + 2);
  if (add_bos) ids.push_back(BosOrFail(d));
  Encoder encoder(d, &ids);
  // Leftmost-longest matching of added tokens, as HF's AddedVocabulary does; the text between
  // matches is normalized and encoded on its own (so each piece gets its own "▁" prefix).
  size_t segment = 0;
  for (size_t i = 0; i < text.size();) {
    if (!d.added_first_byte[static_cast<uint8_t>(text[i])]) {
      ++i;
      continue;
    }
    const tokenizer_internal::AddedToken* best = nullptr;
    for (const auto& t : d.added) {
      if (text.compare(i, t.content.size(), t.content) == 0 &&
          (best == nullptr || t.content.size() > best->content.size())) {
        best = &t;
      }
    }
    if (best == nullptr) {
      ++i;
      continue;
    }
    encoder.EncodeNormalized(Normalize(d, text.substr(segment, i - segment)));
    ids.push_back(best->id);
    i += best->content.size();
    segment = i;
  }
  encoder.EncodeNormalized(Normalize(d, text.substr(segment)));
  return ids;
}

std::string Tokenizer::Decode(std::span<const int> ids, bool skip_special) const {
  const TokenizerData& d = *data_;
  std::string out;
  std::string bytes;  // a run of consecutive byte-fallback tokens
  // HF's ByteFallback decoder: a run that is valid UTF-8 becomes its text; otherwise every byte
  // of the run becomes one U+FFFD.
  auto flush_bytes = [&] {
    if (bytes.empty()) return;
    if (utf8::IsValid(bytes)) {
      out += bytes;
    } else {
      for (size_t k = 0; k < bytes.size(); ++k) out += utf8::kReplacementChar;
    }
    bytes.clear();
  };
  for (const int id : ids) {
    CheckId(id);
    const auto i = static_cast<size_t>(id);
    if (skip_special && d.special[i]) continue;
    if (d.byte_of[i] >= 0) {
      bytes.push_back(static_cast<char>(d.byte_of[i]));
      continue;
    }
    flush_bytes();
    out += d.texts[i];
  }
  flush_bytes();
  if (d.strip_start > 0) {
    const std::string_view c = d.strip_content;
    size_t cut = 0;
    for (int k = 0; k < d.strip_start && out.compare(cut, c.size(), c) == 0; ++k) cut += c.size();
    out.erase(0, cut);
  }
  return out;
}

void Tokenizer::CheckId(int id) const {
  if (id < 0 || id >= vocab_size()) {
    Fail("token id ", id, " is out of range (vocabulary size ", vocab_size(), ")");
  }
}

const std::string& Tokenizer::Piece(int id) const {
  CheckId(id);
  return data_->pieces[static_cast<size_t>(id)];
}

std::optional<int> Tokenizer::TokenId(std::string_view piece) const {
  const auto it = data_->piece_ids.find(std::string(piece));
  if (it == data_->piece_ids.end()) return std::nullopt;
  return it->second;
}

int Tokenizer::vocab_size() const {
  return static_cast<int>(data_->pieces.size());
}
int Tokenizer::bos_id() const {
  return data_->bos_id;
}
int Tokenizer::eos_id() const {
  return data_->eos_id;
}
int Tokenizer::unk_id() const {
  return data_->unk_id;
}
bool Tokenizer::add_bos() const {
  return data_->add_bos;
}

bool Tokenizer::IsSpecial(int id) const {
  return id >= 0 && id < vocab_size() && data_->special[static_cast<size_t>(id)] != 0;
}

}  // namespace elm
