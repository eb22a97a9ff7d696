#include "io/hf_cache.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <vector>

#include "base/error.h"

namespace elm {
namespace fs = std::filesystem;

namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

bool IsRepoPart(const std::string& s) {
  if (s.empty() || s.size() > 96 || s[0] == '.' || s[0] == '-') return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return s.find("..") == std::string::npos;
}

// A branch or tag name as refs/ can hold it: no empty, "." or ".." component, no backslash.
bool IsRevisionName(const std::string& s) {
  if (s.size() > 200 || s.front() == '/' || s.back() == '/') return false;
  for (char c : s)
    if (c == '\\' || static_cast<unsigned char>(c) < 0x20) return false;
  for (size_t b = 0; b <= s.size();) {
    const size_t e = std::min(s.find('/', b), s.size());
    const std::string part = s.substr(b, e - b);
    if (part.empty() || part == "." || part == "..") return false;
    b = e + 1;
  }
  return true;
}

bool IsCommitHash(const std::string& s) {
  if (s.size() != 40) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

}  // namespace

std::string HfHubCacheDir() {
  if (std::string v = Env("HF_HUB_CACHE"); !v.empty()) return v;
  if (std::string v = Env("HF_HOME"); !v.empty()) return (fs::path(v) / "hub").string();
  if (std::string v = Env("XDG_CACHE_HOME"); !v.empty())
    return (fs::path(v) / "huggingface" / "hub").string();
  const std::string home = Env("HOME");
  return (fs::path(home.empty() ? "/" : home) / ".cache" / "huggingface" / "hub").string();
}

bool IsHfRepoId(const std::string& text) {
  const size_t slash = text.find('/');
  if (slash == std::string::npos || text.find('/', slash + 1) != std::string::npos) return false;
  return IsRepoPart(text.substr(0, slash)) && IsRepoPart(text.substr(slash + 1));
}

std::string HfRepoCacheDir(const std::string& cache, const std::string& repo) {
  std::string folder = "models--" + repo;
  for (size_t at = folder.find('/'); at != std::string::npos; at = folder.find('/', at))
    folder.replace(at, 1, "--");
  return (fs::path(cache) / folder).string();
}

std::optional<std::string> FindHfSnapshot(const std::string& cache, const std::string& repo,
                                          const std::string& revision) {
  const fs::path dir(HfRepoCacheDir(cache, repo));
  std::error_code ec;
  std::string commit = revision;
  if (!IsCommitHash(revision)) {
    std::ifstream in(dir / "refs" / revision);
    if (!in) return std::nullopt;
    std::getline(in, commit);
    while (!commit.empty() && (commit.back() == '\n' || commit.back() == ' ')) commit.pop_back();
    if (!IsCommitHash(commit)) return std::nullopt;
  }
  const fs::path snap = dir / "snapshots" / commit;
  if (!fs::is_directory(snap, ec)) return std::nullopt;
  return snap.string();
}

std::optional<HfModelRef> ParseHfModelRef(const std::string& text) {
  const size_t at = text.find('@');
  HfModelRef ref{text.substr(0, at), at == std::string::npos ? "main" : text.substr(at + 1)};
  if (!IsHfRepoId(ref.repo) || ref.revision.empty() || !IsRevisionName(ref.revision))
    return std::nullopt;
  return ref;
}

std::vector<std::string> HfCachedRevisions(const std::string& cache, const std::string& repo) {
  std::vector<std::string> names;
  std::error_code ec;
  const fs::path refs = fs::path(HfRepoCacheDir(cache, repo)) / "refs";
  for (const auto& e : fs::recursive_directory_iterator(refs, ec))
    if (e.is_regular_file(ec)) names.push_back(e.path().lexically_relative(refs).string());
  std::sort(names.begin(), names.end());
  return names;
}

std::string ResolveModelPath(const std::string& path) {
  std::error_code ec;
  if (fs::exists(path, ec)) return path;
  const auto ref = ParseHfModelRef(path);
  if (!ref) Fail(path, ": no such model folder or file");
  const std::string cache = HfHubCacheDir();
  const auto snap = FindHfSnapshot(cache, ref->repo, ref->revision);
  if (!snap) {
    // Name the revisions the cache does hold (a pull with --revision writes refs/<R> only).
    std::string held;
    for (const std::string& r : HfCachedRevisions(cache, ref->repo))
      held += (held.empty() ? "" : ", ") + ref->repo + "@" + r;
    const std::string pull =
        ref->repo + (ref->revision == "main" ? "" : " --revision " + ref->revision);
    if (!held.empty())
      Fail(path, ": the Hugging Face hub cache holds no '", ref->revision, "' revision of '",
           ref->repo, "' in ", HfRepoCacheDir(cache, ref->repo), "; it holds ", held,
           " (pass one of those to --model, or download it with: elm pull ", pull, ")");
    Fail(path, ": no such model folder or file, and no Hugging Face hub snapshot of '", ref->repo,
         "' in ", HfRepoCacheDir(cache, ref->repo), " (download it with: elm pull ", pull, ")");
  }
  if (fs::exists(fs::path(*snap) / "config.json", ec)) return *snap;
  std::vector<std::string> ggufs;
  for (const auto& e : fs::directory_iterator(*snap, ec))
    if (e.path().extension() == ".gguf") ggufs.push_back(e.path().string());
  if (ggufs.size() == 1) return ggufs[0];
  if (ggufs.empty())
    Fail(*snap, ": the hub snapshot of '", path,
         "' has no config.json and no .gguf file (download ", "it again with: elm pull ", path,
         ")");
  Fail(*snap, ": the hub snapshot of '", path, "' holds ", ggufs.size(),
       " .gguf files and no config.json; pass one of them with --model");
}

std::string HfRepoNameOf(const std::string& path) {
  fs::path p = fs::path(path).lexically_normal();
  for (; !p.empty() && p.has_parent_path() && p != p.parent_path(); p = p.parent_path()) {
    if (p.parent_path().filename() != "snapshots" || !IsCommitHash(p.filename().string())) continue;
    const std::string repo = p.parent_path().parent_path().filename().string();
    const size_t sep = repo.rfind("--");
    if (repo.rfind("models--", 0) == 0 && sep != std::string::npos && sep + 2 < repo.size())
      return repo.substr(sep + 2);
  }
  return "";
}

}  // namespace elm
