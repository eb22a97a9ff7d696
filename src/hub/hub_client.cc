#include "hub/hub_client.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <system_error>

#include "base/error.h"
#include "base/mmap_file.h"
#include "hub/hub_libs.h"
#include "io/hf_cache.h"

namespace elm {
namespace fs = std::filesystem;

namespace {

constexpr const char* kDefaultEndpoint = "https://huggingface.co";

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string Trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

// Percent-encodes each part of a repo-relative path (the '/' between parts stay).
std::string EncodePath(const std::string& path) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : path) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// One libcurl transfer: status, the last response's headers (lower-case names), body (when no
// file sink), and curl's error.
struct Response {
  long status = 0;
  std::map<std::string, std::string> headers;
  std::string body;
  CURLcode code = CURLE_OK;
  std::string error;
};

struct Transfer {
  Response* resp = nullptr;
  std::FILE* sink = nullptr;  // body to this file when set, else into resp->body
  bool write_failed = false;
  const PullProgressFn* progress = nullptr;
  std::string file;
  int64_t offset = 0, total = 0;
};

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const std::string line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {
    t->resp->headers.clear();  // a new response (after a redirect): keep only the last one's
  } else if (const size_t colon = line.find(':'); colon != std::string::npos) {
    t->resp->headers[Lower(Trim(line.substr(0, colon)))] = Trim(line.substr(colon + 1));
  }
  return size * n;
}

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  if (t->sink != nullptr) {
    if (std::fwrite(data, 1, size * n, t->sink) != size * n) {
      t->write_failed = true;
      return 0;
    }
  } else {
    t->resp->body.append(data, size * n);
  }
  return size * n;
}

int OnProgress(void* user, curl_off_t /*dltotal*/, curl_off_t dlnow, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (t->progress != nullptr && *t->progress)
    (*t->progress)(t->file, t->offset + static_cast<int64_t>(dlnow), t->total);
  return 0;
}

struct CurlDeleter {
  void operator()(CURL* c) const { Curl().easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { Curl().slist_free_all(l); }
};

class Hub {
 public:
  explicit Hub(const HubOptions& opt) : opt_(opt) {
    static const CURLcode global = Curl().global_init(CURL_GLOBAL_DEFAULT);
    if (global != CURLE_OK) Fail("libcurl: ", Curl().easy_strerror(global));
    endpoint_ = !opt_.endpoint.empty() ? opt_.endpoint : Env("HF_ENDPOINT");
    if (endpoint_.empty()) endpoint_ = kDefaultEndpoint;
    while (!endpoint_.empty() && endpoint_.back() == '/') endpoint_.pop_back();
    token_ = !opt_.token.empty() ? opt_.token : Env("HF_TOKEN");
  }

  const std::string& endpoint() const { return endpoint_; }

  // method "GET" or "HEAD"; `range_from` > 0 asks for the bytes from there on.
  Response Request(const std::string& method, const std::string& url, bool follow,
                   Transfer* sink_transfer = nullptr, int64_t range_from = 0) const {
    const CurlLib& curl_api = Curl();
    std::unique_ptr<CURL, CurlDeleter> curl(curl_api.easy_init());
    if (!curl) Fail("libcurl: cannot start a transfer");
    Response resp;
    Transfer local;
    Transfer* t = sink_transfer != nullptr ? sink_transfer : &local;
    t->resp = &resp;
    char err[CURL_ERROR_SIZE] = "";
    CURL* c = curl.get();
    curl_api.easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_api.easy_setopt(c, CURLOPT_ERRORBUFFER, err);
    curl_api.easy_setopt(c, CURLOPT_USERAGENT, "elm-pull/0.1 (libcurl)");
    curl_api.easy_setopt(c, CURLOPT_FOLLOWLOCATION, follow ? 1L : 0L);
    curl_api.easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_api.easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    // A stalled transfer (under 1 KiB/s for a minute) is cut and retried.
    curl_api.easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_api.easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_api.easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
    curl_api.easy_setopt(c, CURLOPT_HEADERDATA, t);
    curl_api.easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
    curl_api.easy_setopt(c, CURLOPT_WRITEDATA, t);
    curl_api.easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (method == "HEAD") curl_api.easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (range_from > 0)
      curl_api.easy_setopt(c, CURLOPT_RANGE, (std::to_string(range_from) + "-").c_str());
    if (t->progress != nullptr) {
      curl_api.easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
      curl_api.easy_setopt(c, CURLOPT_XFERINFOFUNCTION, OnProgress);
      curl_api.easy_setopt(c, CURLOPT_XFERINFODATA, t);
    }
    // libcurl (7.58 and later) drops this header when a redirect leads to another host, so the
    // token never reaches the CDN that serves LFS files.
    std::unique_ptr<curl_slist, SlistDeleter> headers;
    if (!token_.empty())
      headers.reset(curl_api.slist_append(nullptr, ("Authorization: Bearer " + token_).c_str()));
    if (headers) curl_api.easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
    resp.code = curl_api.easy_perform(c);
    if (resp.code != CURLE_OK) resp.error = *err != '\0' ? err : Curl().easy_strerror(resp.code);
    curl_api.easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp.status);
    return resp;
  }

  // Throws for a status the caller cannot use, saying what to do.
  [[noreturn]] void FailStatus(const std::string& what, const std::string& url,
                               const Response& r) const {
    std::string msg;
    if (auto it = r.headers.find("x-error-message"); it != r.headers.end())
      msg = " (" + it->second + ")";
    if (r.status == 401 || r.status == 403)
      Fail(what, ": HTTP ", r.status, " from ", url, msg,
           token_.empty()
               ? "; the repository is gated or private: set HF_TOKEN to an access token "
                 "(https://huggingface.co/settings/tokens) after accepting its terms on its page"
               : "; the token in HF_TOKEN has no access to it (accept the terms on the "
                 "repository's page, or use another token)");
    if (r.status == 404)
      Fail(what, ": HTTP 404 from ", url, msg,
           "; check the repository name (owner/name) and --revision");
    Fail(what, ": HTTP ", r.status, " from ", url, msg);
  }

 private:
  HubOptions opt_;
  std::string endpoint_, token_;
};

// Hex digest of a file: sha256, or the git blob sha1 ("blob <size>\0" + bytes) when `git_blob`.
std::string FileDigest(const std::string& path, bool git_blob) {
  const CryptoLib& crypto = Crypto();
  std::unique_ptr<EVP_MD_CTX, decltype(crypto.md_ctx_free)> ctx(crypto.md_ctx_new(),
                                                                crypto.md_ctx_free);
  if (!ctx ||
      crypto.digest_init(ctx.get(), git_blob ? crypto.sha1() : crypto.sha256(), nullptr) != 1)
    Fail(path, ": cannot start a digest");
  std::error_code ec;
  if (git_blob) {
    const std::string head = "blob " + std::to_string(fs::file_size(path, ec));
    crypto.digest_update(ctx.get(), head.data(), head.size() + 1);  // with the NUL
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail(path, ": cannot read");
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0)
      crypto.digest_update(ctx.get(), buf.data(), static_cast<size_t>(in.gcount()));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  crypto.digest_final(ctx.get(), md, &len);
  std::string hex;
  static const char* kHex = "0123456789abcdef";
  for (unsigned i = 0; i < len; ++i) {
    hex += kHex[md[i] >> 4];
    hex += kHex[md[i] & 15];
  }
  return hex;
}

// Makes `link` a symbolic link to `target`, atomically (a temp link renamed over it).
void PlaceLink(const fs::path& link, const fs::path& target) {
  fs::create_directories(link.parent_path());
  const fs::path tmp = TempPathFor(link.string());
  std::error_code ec;
  fs::remove(tmp, ec);
  fs::create_symlink(target, tmp);
  fs::rename(tmp, link);
}

struct RemoteFile {
  std::string name, etag;
  int64_t size = -1;
};

// Step 2: the ETag and size of `file` at `commit`.
RemoteFile Describe(const Hub& hub, const std::string& repo, const std::string& commit,
                    const std::string& file) {
  std::string url = hub.endpoint() + "/" + repo + "/resolve/" + commit + "/" + EncodePath(file);
  const std::string what = repo + ": " + file;
  for (int hop = 0; hop < 5; ++hop) {
    const Response r = hub.Request("HEAD", url, /*follow=*/false);
    if (r.code != CURLE_OK) Fail(what, ": HEAD ", url, ": ", r.error);
    auto header = [&](const char* name) {
      auto it = r.headers.find(name);
      return it != r.headers.end() ? it->second : std::string();
    };
    const bool redirect = r.status >= 300 && r.status < 400;
    if (r.status != 200 && !redirect) hub.FailStatus(what, url, r);
    RemoteFile f{file, NormalizeEtag(header("x-linked-etag")), -1};
    if (f.etag.empty()) f.etag = NormalizeEtag(header("etag"));
    std::string size = header("x-linked-size");
    if (size.empty() && !redirect) size = header("content-length");
    if (redirect && f.etag.empty()) {
      // A redirect without the LFS headers (a renamed repository): follow it, same host only.
      const std::string loc = header("location");
      if (loc.empty() || loc[0] != '/') Fail(what, ": redirect to ", loc, " without an ETag");
      url = hub.endpoint() + loc;
      continue;
    }
    if (f.etag.empty()) Fail(what, ": the hub sent no ETag for ", url);
    CheckEtag(f.etag, what);
    f.size = ParseSizeHeader(size);
    if (f.size < 0) Fail(what, ": the hub sent no file size for ", url);
    return f;
  }
  Fail(what, ": too many redirects from ", url);
}

// Step 3: the blob of `f` in `blobs`, downloaded (or resumed) and checked. Returns bytes fetched.
int64_t FetchBlob(const Hub& hub, const HubOptions& opt, const std::string& repo,
                  const std::string& commit, const RemoteFile& f, const fs::path& blobs,
                  const PullProgressFn& progress) {
  const fs::path blob = blobs / f.etag;
  const std::string what = repo + ": " + f.name;
  std::error_code ec;
  if (fs::is_regular_file(blob, ec) && static_cast<int64_t>(fs::file_size(blob, ec)) == f.size) {
    if (progress) progress(f.name, f.size, f.size);
    return 0;
  }
  fs::create_directories(blobs);
  const fs::path part = blobs / (f.etag + ".incomplete");
  const std::string url =
      hub.endpoint() + "/" + repo + "/resolve/" + commit + "/" + EncodePath(f.name);
  int64_t fetched = 0;
  std::string last_error;
  for (int attempt = 0; attempt < std::max(1, opt.max_attempts); ++attempt) {
    int64_t have =
        fs::is_regular_file(part, ec) ? static_cast<int64_t>(fs::file_size(part, ec)) : 0;
    if (have > f.size) {
      fs::remove(part, ec);  // longer than the file: not a prefix of it
      have = 0;
    }
    if (have == f.size && f.size > 0) break;
    Transfer t;
    t.progress = progress ? &progress : nullptr;
    t.file = f.name;
    t.offset = have;
    t.total = f.size;
    std::FILE* out = std::fopen(part.c_str(), have > 0 ? "ab" : "wb");
    if (out == nullptr) Fail(part.string(), ": cannot write");
    t.sink = out;
    // The body is appended whatever the status; below, a 200 to a Range request (the whole
    // file again) is moved to the start and an error page is cut off again.
    const Response r = hub.Request("GET", url, /*follow=*/true, &t, have);
    std::fclose(out);
    if (t.write_failed) Fail(part.string(), ": write failed (disk full?)");
    const int64_t now =
        fs::is_regular_file(part, ec) ? static_cast<int64_t>(fs::file_size(part, ec)) : 0;
    if (r.status == 200 && have > 0) {
      // The server ignored the Range: the file restarted at byte 0 after the `have` kept bytes.
      std::vector<char> bytes(static_cast<size_t>(now - have));
      {
        std::ifstream in(part, std::ios::binary);
        in.seekg(have);
        in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      }
      std::ofstream rewrite(part, std::ios::binary | std::ios::trunc);
      rewrite.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    } else if (r.status == 416) {
      fs::remove(part, ec);  // the range is past the end: the partial file is not this file
      last_error = "HTTP 416 for a resumed download";
      continue;
    } else if (r.status != 200 && r.status != 206) {
      fs::resize_file(part, static_cast<uintmax_t>(have), ec);  // drop an error page
      if (r.status != 0) hub.FailStatus(what, url, r);
    }
    fetched += std::max<int64_t>(0, now - have);
    if (r.code == CURLE_OK && r.status != 0) {
      last_error.clear();
      if (static_cast<int64_t>(fs::file_size(part, ec)) >= f.size) break;
      last_error = "the connection closed early";
    } else {
      last_error = r.error;
    }
    if (progress)
      std::fprintf(stderr, "\nelm pull: %s: %s; resuming (attempt %d of %d)\n", f.name.c_str(),
                   last_error.c_str(), attempt + 2, std::max(1, opt.max_attempts));
  }
  const int64_t got =
      fs::is_regular_file(part, ec) ? static_cast<int64_t>(fs::file_size(part, ec)) : 0;
  if (got < f.size)
    Fail(what, ": download incomplete (", got, " of ", f.size, " bytes; ", last_error,
         "); run elm pull again to resume");
  if (got != f.size) {
    fs::remove(part, ec);
    Fail(what, ": downloaded ", got, " bytes but the hub announced ", f.size);
  }
  // The ETag names the content: sha256 for LFS files, the git blob sha1 for the others.
  const bool lfs = IsLowerHex(f.etag, 64), git = IsLowerHex(f.etag, 40);
  if (lfs || git) {
    const std::string digest = FileDigest(part.string(), git);
    if (digest != f.etag) {
      fs::remove(part, ec);
      Fail(what, ": ", lfs ? "sha256" : "git sha1", " ", digest, " does not match the hub's ETag ",
           f.etag,
           " (the download was removed; run elm pull "
           "again)");
    }
  }
  SyncFile(part.string());
  fs::rename(part, blob);
  SyncDirectory(blobs.string());
  if (progress) progress(f.name, f.size, f.size);
  return fetched;
}

}  // namespace

PullResult PullModel(const PullRequest& req, const HubOptions& opt,
                     const PullProgressFn& progress) {
  if (!IsHfRepoId(req.repo))
    Fail("'", req.repo, "': not a Hugging Face repository id (expected owner/name)");
  if (req.revision.empty() || req.revision.find("..") != std::string::npos)
    Fail("--revision: '", req.revision, "' is not a branch, tag or commit");
  const Hub hub(opt);
  const std::string cache = !opt.cache_dir.empty() ? opt.cache_dir : HfHubCacheDir();
  const fs::path repo_dir(HfRepoCacheDir(cache, req.repo));

  // Step 1: the commit and the file list.
  const std::string api =
      hub.endpoint() + "/api/models/" + req.repo + "/revision/" + EncodePath(req.revision);
  const Response r = hub.Request("GET", api, /*follow=*/true);
  if (r.code != CURLE_OK)
    Fail(req.repo, ": cannot reach ", hub.endpoint(), " (", r.error,
         "); set HF_ENDPOINT for a mirror");
  if (r.status != 200) hub.FailStatus(req.repo, api, r);
  const HubModelInfo info = ParseHubModelInfo(r.body, req.repo + ": " + api, req.include);
  PullResult out;
  out.commit = info.commit;
  out.files = info.files;
  const std::vector<std::string>& ggufs = info.ggufs;
  const bool has_config =
      std::find(out.files.begin(), out.files.end(), "config.json") != out.files.end();
  if (out.files.empty() || (!has_config && req.include.empty())) {
    std::string hint;
    if (!ggufs.empty())
      hint = "; it has " + std::to_string(ggufs.size()) + " GGUF file(s), e.g. " + ggufs[0] +
             ": pick one with --include '" + ggufs[0] + "'";
    Fail(req.repo, ": the repository at ", req.revision,
         " has no config.json with safetensors weights", hint);
  }

  // Steps 2 and 3, then the snapshot links and the ref.
  const fs::path snapshot = repo_dir / "snapshots" / out.commit;
  for (const std::string& file : out.files) {
    const RemoteFile f = Describe(hub, req.repo, out.commit, file);
    out.downloaded_bytes +=
        FetchBlob(hub, opt, req.repo, out.commit, f, repo_dir / "blobs", progress);
    const fs::path link = snapshot / file;
    fs::path up;
    const fs::path rel(file);
    for (auto it = rel.begin(); it != rel.end(); ++it) up /= "..";
    // From snapshots/<commit>/<file>: up to the snapshot, then ../../blobs/<etag>.
    PlaceLink(link, (up.parent_path() / ".." / ".." / "blobs" / f.etag).lexically_normal());
  }
  SyncDirectory(snapshot.string());
  if (req.revision != out.commit) {
    const fs::path ref = repo_dir / "refs" / req.revision;
    fs::create_directories(ref.parent_path());
    WriteFileAtomic(ref.string(), out.commit.data(), out.commit.size());
  }
  out.snapshot = snapshot.string();
  return out;
}

}  // namespace elm
