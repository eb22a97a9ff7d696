// What elm reads from the Hugging Face hub's answers (hub_client.h): the model description of
// GET /api/models/{repo}/revision/{revision} and a file's ETag and size headers. Pure functions,
// no network, so the parsers are fuzzed on their own (tests/fuzz/hub_api_fuzz.cc).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace elm {

struct HubModelInfo {
  std::string commit;              // "sha": 40 hex digits
  std::vector<std::string> files;  // the siblings elm needs (PullFileWanted), in the hub's order
  std::vector<std::string> ggufs;  // every *.gguf sibling (for the hint when nothing is wanted)
};

// Whether elm needs `file` of a repository: config.json, the safetensors weights and their
// index, the tokenizer files, and anything matching one of `include` (fnmatch globs).
bool PullFileWanted(const std::string& file, const std::vector<std::string>& include);

// Parses the model description `body`; errors (elm::Error) begin with `what` (the repo and URL).
// A sibling name that is absolute or contains ".." is an error, never a path to write.
HubModelInfo ParseHubModelInfo(const std::string& body, const std::string& what,
                               const std::vector<std::string>& include);

// An ETag header without quotes and the weak marker (W/"abc" → abc); "" when empty.
std::string NormalizeEtag(const std::string& header);
// Throws (naming `what`) unless `etag` can name a blob file: non-empty, no '/' and no "..".
void CheckEtag(const std::string& etag, const std::string& what);
// A size header (X-Linked-Size or Content-Length): a non-negative decimal integer, else -1.
int64_t ParseSizeHeader(const std::string& header);
// Whether `s` is `n` lower-case hex digits.
bool IsLowerHex(const std::string& s, size_t n);

}  // namespace elm
