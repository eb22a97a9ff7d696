// The local Hugging Face hub cache, read the way transformers and huggingface_hub read it
// (docs/formats.md, "Hub names"): a model id `owner/name` is the folder
//
//   <cache>/models--owner--name/
//     refs/main                 the commit hash that the revision "main" points at
//     snapshots/<commit>/FILE   a relative symbolic link to ../../blobs/<etag> (or the file)
//     blobs/<etag>              the file's bytes, named by its ETag (sha256 for LFS files)
//
// with <cache> = $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
// ~/.cache/huggingface/hub. `elm pull` (src/hub) writes this layout; every --model argument goes
// through ResolveModelPath, so a hub name works wherever a folder does.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace elm {

// The hub cache folder (it need not exist).
std::string HfHubCacheDir();

// True for `owner/name` as the hub spells repository ids: two parts of letters, digits, '-',
// '_' and '.', neither empty nor starting with '.', and no other '/'.
bool IsHfRepoId(const std::string& text);

// <cache>/models--owner--name.
std::string HfRepoCacheDir(const std::string& cache, const std::string& repo);

// The snapshot folder of `repo` at `revision` (a branch or tag name read from refs/, or a
// 40-hex commit) in `cache`; nullopt when the cache does not hold it.
std::optional<std::string> FindHfSnapshot(const std::string& cache, const std::string& repo,
                                          const std::string& revision = "main");

// A model named on the command line as `owner/name` (revision "main") or `owner/name@revision`
// (a branch, tag or commit, as `elm pull --revision` fetched it).
struct HfModelRef {
  std::string repo;
  std::string revision;
};
std::optional<HfModelRef> ParseHfModelRef(const std::string& text);

// The revisions (names under refs/) the cache holds for `repo`, sorted.
std::vector<std::string> HfCachedRevisions(const std::string& cache, const std::string& repo);

// `path` when it exists; else, for a hub name (ParseHfModelRef) held in the cache, its snapshot
// folder (or the one .gguf file of a snapshot that has no config.json). Throws elm::Error naming
// the path otherwise, saying how to get a hub model (`elm pull owner/name`).
std::string ResolveModelPath(const std::string& path);

// The repository name ("OpenELM-270M") when `path` lies inside a snapshot of the cache layout
// (…/models--owner--name/snapshots/<commit>/…), else "". Names outputs after the model, not the
// commit.
std::string HfRepoNameOf(const std::string& path);

}  // namespace elm
