// The one table of generation defaults shared by every surface: `elm generate` and `elm chat`
// (their flags' defaults), the server's /v1/completions and /v1/chat/completions (a field left out
// of a request) and the chat page (its settings before the user changes one). The sampler values
// are SamplingParams' member initializers (sampling/sampler.h, llama.cpp's defaults); this file
// adds the two that are not a property of the sampler itself: the reply length and the seed.
// docs/sampling.md has the table.
#pragma once

#include <cstdint>

#include "sampling/sampler.h"

namespace elm {

// The sampler settings a surface starts from (every field but the seed is used as is; the seed is
// drawn per run or request unless the user gives one, see RandomSeed).
inline SamplingParams DefaultSamplingParams() {
  return SamplingParams{};
}

// The longest reply asked for when the user names no length.
inline constexpr int kDefaultMaxReplyTokens = 256;

// The default reply length for a context of `context` positions: kDefaultMaxReplyTokens, but at
// most half the context, so a prompt (or a chat history, trimmed to fit) always keeps the other
// half. At least 1.
int DefaultReplyTokens(int context);

// A fresh seed from the operating system's entropy (std::random_device): each run samples
// different text unless the user passes a seed, which makes it repeatable.
uint64_t RandomSeed();

}  // namespace elm
