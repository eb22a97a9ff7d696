// POST /v1/embeddings (OpenAI's shape; docs/server.md "Embeddings"): input as a string, an array
// of strings, an array of token ids or an array of such arrays; encoding_format "float" (default)
// or "base64" (little-endian float32, as OpenAI's clients decode it); elm's extensions "pooling"
// ("mean", the default, or "last") and "normalize" (default true). Each input runs in a session of
// its own length, not in a generation slot, so embeddings never wait behind completions.
#pragma once

#include <httplib.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "generation/embedding.h"
#include "server/server_state.h"

namespace elm::server {

struct EmbeddingRequest {
  std::vector<std::vector<int>> inputs;  // token ids, one list per input
  bool base64 = false;
  EmbedOptions options;
};

// Validates the body (every 400 names its field); texts are tokenized with `tok` (BOS as the
// tokenizer adds it); each input must fit `max_tokens`.
EmbeddingRequest ParseEmbeddingRequest(const nlohmann::json& body, const Tokenizer& tok,
                                       int vocab_size, int max_tokens);

// The little-endian float32 bytes of `v` in standard base64.
std::string EmbeddingBase64(const std::vector<float>& v);

void HandleEmbeddings(ServerState& st, const httplib::Request& req, httplib::Response& res);

}  // namespace elm::server
