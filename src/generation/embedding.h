// Text embeddings from a causal model (elm embed, POST /v1/embeddings; docs/server.md
// "Embeddings"): the final hidden states (the last layer's output after the final norm, what
// Session::Forward's hidden_states gives as its last entry and HF's output_hidden_states[-1])
// pooled over the tokens, by their mean or by the last token, and L2-normalized unless asked not
// to be.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "model/session.h"

namespace elm {

enum class Pooling { kMean, kLast };

// "mean" or "last"; anything else throws elm::Error naming `field`.
Pooling ParsePooling(const std::string& name, const std::string& field);
const char* PoolingName(Pooling p);

struct EmbedOptions {
  Pooling pooling = Pooling::kMean;
  bool normalize = true;  // scale to unit L2 norm (a zero vector stays zero)
};

// The embedding of `tokens` (non-empty, at most session.context()): the session is reset, the
// tokens run through it in batches of Session::kMaxBatch, and the final hidden states pooled.
// Returns model dim floats. Throws elm::Error for an empty or too long input or bad ids.
std::vector<float> Embed(Session& session, std::span<const int> tokens, const EmbedOptions& opt);

}  // namespace elm
