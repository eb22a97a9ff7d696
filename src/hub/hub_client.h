// `elm pull`: downloads a model repository from the Hugging Face hub into the local hub cache
// (io/hf_cache.h), the way huggingface_hub does, with libcurl (docs/formats.md, "Hub names and
// elm pull"; docs/architecture.md says why libcurl).
//
//   1. GET {endpoint}/api/models/{repo}/revision/{revision}: the commit ("sha") and the files
//      ("siblings"); elm keeps the ones it reads (PullFileWanted).
//   2. For each file, HEAD {endpoint}/{repo}/resolve/{commit}/{file} without following the
//      redirect: its ETag (X-Linked-Etag for LFS files, whose bytes live behind a redirect) and
//      size (X-Linked-Size or Content-Length).
//   3. GET the same URL (redirects followed) into blobs/<etag>.incomplete, resuming a partial
//      file with a Range request, retrying a cut connection; check the size and the hash the
//      ETag names (sha256 for LFS files, the git blob sha1 otherwise); rename into blobs/<etag>.
//   4. snapshots/<commit>/<file> becomes a relative link to the blob, refs/<revision> the
//      commit; every step is atomic (a rename), so an interrupted pull leaves only .incomplete
//      files, which the next pull resumes.
//
// $HF_ENDPOINT replaces https://huggingface.co; $HF_TOKEN is sent as "Authorization: Bearer"
// (gated and private repositories).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "hub/hub_api.h"

namespace elm {

struct HubOptions {
  std::string endpoint;   // "" = $HF_ENDPOINT, else https://huggingface.co
  std::string token;      // "" = $HF_TOKEN (none when unset)
  std::string cache_dir;  // "" = HfHubCacheDir()
  int max_attempts = 5;   // tries per file before a cut connection is an error
};

struct PullRequest {
  std::string repo;                  // owner/name
  std::string revision = "main";     // branch, tag or commit
  std::vector<std::string> include;  // extra files by glob (fnmatch), e.g. "*.gguf"
};

struct PullResult {
  std::string commit;
  std::string snapshot;            // the snapshot folder: pass it (or the repo id) to --model
  std::vector<std::string> files;  // repo-relative names, in download order
  int64_t downloaded_bytes = 0;    // bytes fetched this time (0 when all were cached)
};

// (file, bytes of it present, its size): called as bytes arrive and once when a file is done.
using PullProgressFn = std::function<void(const std::string& file, int64_t done, int64_t total)>;

// Downloads `req` into the cache. Errors (elm::Error) name the repository, the file and the HTTP
// status, and say what to do (HF_TOKEN for 401/403, the name for 404).
PullResult PullModel(const PullRequest& req, const HubOptions& opt,
                     const PullProgressFn& progress = {});

}  // namespace elm
