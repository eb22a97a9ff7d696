#include "train/text_sources.h"

#include <cctype>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/mmap_file.h"
#include "base/text_stream.h"

namespace elm {
namespace fs = std::filesystem;

namespace {

// Python str.format of one "{name:0Nd}" / "{name}" field with an integer.
std::string FormatField(const std::string& pattern, int64_t id, const std::string& key) {
  const size_t open = pattern.find('{');
  const size_t close = pattern.find('}', open);
  if (close == std::string::npos) Fail(key, ": unterminated '{' in '", pattern, "'");
  const std::string field = pattern.substr(open + 1, close - open - 1);
  std::string num = std::to_string(id);
  const size_t colon = field.find(':');
  if (colon != std::string::npos) {
    std::string spec = field.substr(colon + 1);
    if (!spec.empty() && spec.back() == 'd') spec.pop_back();
    const bool zero = !spec.empty() && spec[0] == '0';
    const size_t width = spec.empty() ? 0 : static_cast<size_t>(std::stoi(spec));
    while (num.size() < width) num.insert(num.begin(), zero ? '0' : ' ');
  }
  return pattern.substr(0, open) + num + pattern.substr(close + 1);
}

SourceKind KindOf(const std::string& path, const std::string& key) {
  // Debian 12 packages no parquet/arrow library (docs/training.md, "Compressed data"): convert.
  for (const char* bad : {".parquet", ".arrow"})
    if (std::string_view(path).ends_with(bad))
      Fail(key, ": '", path, "': elm does not read ", bad,
           " files; convert them to JSONL (plain or gzip/zstd-compressed), e.g. python3 -c "
           "\"import pandas, sys; pandas.read_parquet(sys.argv[1]).to_json(sys.argv[2], "
           "orient='records', lines=True)\" in",
           bad, " out.jsonl.gz, and set text_key to the text column (docs/training.md)");
  // "a.jsonl.gz" and "a.jsonl.zst" are JSONL, "a.txt.gz" text (base/text_stream.h decompresses).
  const std::string_view name = StripCompressionSuffix(path);
  if (name.ends_with(".jsonl") || name.ends_with(".json")) return SourceKind::kJsonl;
  if (name.ends_with(".bin")) {
    if (name.size() != path.size())
      Fail(key, ": '", path, "': llm.c token shards are read uncompressed; decompress it first");
    return SourceKind::kTokens;
  }
  return SourceKind::kText;
}

}  // namespace

std::vector<SourceFile> ResolveSources(const std::vector<DataSourceInfo>& infos,
                                       const std::string& base_dir, const std::string& key) {
  std::vector<SourceFile> out;
  for (size_t i = 0; i < infos.size(); ++i) {
    const DataSourceInfo& info = infos[i];
    const std::string at = key + "[" + std::to_string(i) + "]";
    const std::string pattern = ExpandEnv(info.file_name, at + ".file_name");
    std::vector<std::string> names;
    if (pattern.find('{') != std::string::npos) {
      if (info.file_id_begin < 0 || info.file_id_end < info.file_id_begin)
        Fail(at, ": file_name '", pattern, "' has a {file_id} field but no valid file_id_range");
      for (int64_t id = info.file_id_begin; id < info.file_id_end; ++id)
        names.push_back(FormatField(pattern, id, at));
    } else {
      names.push_back(pattern);
    }
    for (const auto& n : names) {
      const SourceKind kind = KindOf(n, at);
      fs::path p(n);
      if (p.is_relative() && !fs::exists(p) && !base_dir.empty() && fs::exists(base_dir / p))
        p = fs::path(base_dir) / p;
      if (!fs::exists(p)) Fail(at, ": data file '", n, "' not found");
      out.push_back({p.string(), kind, info.text_key});
    }
  }
  return out;
}

void ForEachDocument(const SourceFile& src, const std::function<void(std::string&&)>& fn) {
  if (src.kind == SourceKind::kText) {
    fn(ReadTextStreamFile(src.path));
    return;
  }
  ELM_CHECK(src.kind == SourceKind::kJsonl);
  TextStream in(src.path);  // plain, gzip or zstd: line by line
  std::string line;
  int64_t lineno = 0;
  while (in.ReadLine(line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      Fail(src.path, ":", lineno, ": not valid JSON: ", e.what());
    }
    if (!j.is_object() || !j.contains(src.text_key) || !j[src.text_key].is_string())
      Fail(src.path, ":", lineno, ": expected an object with a string field '", src.text_key,
           "' (set text_key in train_data_info to use another field)");
    fn(j[src.text_key].get<std::string>());
  }
}

std::vector<int32_t> ReadTokenShard(const std::string& path) {
  MmapFile f(path);
  constexpr size_t kHeader = 256 * 4;
  if (f.size() < kHeader) Fail(path, ": too short for an llm.c token shard header");
  int32_t h[3];
  std::memcpy(h, f.data(), sizeof h);
  if (h[0] != 20240520) Fail(path, ": not an llm.c token shard (magic ", h[0], ", want 20240520)");
  if (h[1] != 1) Fail(path, ": token shard version ", h[1], " is not supported (want 1)");
  const auto n = static_cast<size_t>(static_cast<uint32_t>(h[2]));
  if (f.size() != kHeader + 2 * n)
    Fail(path, ": header says ", n, " tokens but the file holds ", (f.size() - kHeader) / 2);
  std::vector<int32_t> out(n);
  const uint8_t* p = f.data() + kHeader;
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<int32_t>(p[2 * i] | (p[2 * i + 1] << 8));
  return out;
}

void WriteTokenShard(const std::string& path, const std::vector<int32_t>& tokens) {
  std::string buf(256 * 4 + 2 * tokens.size(), '\0');
  const int32_t h[3] = {20240520, 1, static_cast<int32_t>(tokens.size())};
  std::memcpy(buf.data(), h, sizeof h);
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] > 65535) Fail(path, ": token ", tokens[i], " does not fit u16");
    buf[1024 + 2 * i] = static_cast<char>(tokens[i] & 0xff);
    buf[1024 + 2 * i + 1] = static_cast<char>((tokens[i] >> 8) & 0xff);
  }
  WriteFileAtomic(path, buf.data(), buf.size());
}

std::vector<std::string> SplitDocument(std::string_view text, int max_words) {
  std::vector<std::string> pieces;
  std::string cur;
  int words = 0;
  size_t i = 0;
  while (true) {
    const size_t sp = text.find(' ', i);
    const std::string_view w =
        text.substr(i, sp == std::string_view::npos ? text.size() - i : sp - i);
    if (words > 0) cur += ' ';
    cur.append(w);
    if (++words == max_words) {
      pieces.push_back(std::move(cur));
      cur.clear();
      words = 0;
    }
    if (sp == std::string_view::npos) break;
    i = sp + 1;
  }
  if (words > 0) pieces.push_back(std::move(cur));
  return pieces;
}

int64_t FilterLength(std::string_view text) {
  // " ".join(text.lower().translate(no punctuation).split()): count the kept characters (bytes
  // beyond ASCII count once per UTF-8 lead byte) plus one space between words.
  int64_t n = 0;
  bool in_word = false, any = false;
  for (unsigned char ch : text) {
    if (ch < 128 && std::ispunct(ch)) continue;
    if (ch < 128 && std::isspace(ch)) {
      in_word = false;
      continue;
    }
    if ((ch & 0xC0) == 0x80) continue;  // UTF-8 continuation byte: same character
    if (!in_word && any) ++n;           // the separating space
    in_word = any = true;
    ++n;
  }
  return n;
}

}  // namespace elm
