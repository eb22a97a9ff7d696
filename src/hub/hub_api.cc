#include "hub/hub_api.h"

#include <fnmatch.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "base/error.h"

namespace elm {

bool PullFileWanted(const std::string& file, const std::vector<std::string>& include) {
  for (const auto& pattern : include)
    if (fnmatch(pattern.c_str(), file.c_str(), 0) == 0) return true;
  if (file.find('/') != std::string::npos) return false;  // elm reads the top folder only
  static const char* kNames[] = {"config.json", "model.safetensors.index.json", "tokenizer.json",
                                 "tokenizer_config.json", "special_tokens_map.json"};
  for (const char* name : kNames)
    if (file == name) return true;
  return file.size() > 12 && file.compare(file.size() - 12, 12, ".safetensors") == 0;
}

bool IsLowerHex(const std::string& s, size_t n) {
  if (s.size() != n) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

HubModelInfo ParseHubModelInfo(const std::string& body, const std::string& what,
                               const std::vector<std::string>& include) {
  const nlohmann::json info = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!info.is_object() || !info.contains("sha") || !info["sha"].is_string() ||
      !info.contains("siblings") || !info["siblings"].is_array())
    Fail(what, " did not answer a model description (fields sha, siblings)");
  HubModelInfo out;
  out.commit = info["sha"].get<std::string>();
  if (!IsLowerHex(out.commit, 40)) Fail(what, ": field sha is not a commit hash");
  for (const auto& s : info["siblings"]) {
    if (!s.is_object() || !s.contains("rfilename") || !s["rfilename"].is_string())
      Fail(what, ": a sibling without rfilename");
    const std::string name = s["rfilename"].get<std::string>();
    if (name.empty() || name[0] == '/' || name.find("..") != std::string::npos ||
        name.find('\0') != std::string::npos)
      Fail(what, ": unsafe file name '", name, "'");
    if (PullFileWanted(name, include)) out.files.push_back(name);
    if (std::filesystem::path(name).extension() == ".gguf") out.ggufs.push_back(name);
  }
  return out;
}

std::string NormalizeEtag(const std::string& header) {
  size_t b = 0, e = header.size();
  while (b < e && std::isspace(static_cast<unsigned char>(header[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(header[e - 1]))) --e;
  std::string s = header.substr(b, e - b);
  if (s.rfind("W/", 0) == 0) s = s.substr(2);
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return s;
}

void CheckEtag(const std::string& etag, const std::string& what) {
  if (etag.empty() || etag.find('/') != std::string::npos || etag.find("..") != std::string::npos ||
      etag.find('\0') != std::string::npos)
    Fail(what, ": unusable ETag '", etag, "'");
}

int64_t ParseSizeHeader(const std::string& header) {
  if (header.empty() || header.size() > 18) return -1;  // 18 digits cannot overflow int64
  int64_t v = 0;
  for (char c : header) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

}  // namespace elm
