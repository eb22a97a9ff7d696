// Parsing and validation of OpenAI-style request bodies (completions, chat completions) and the
// llama.cpp-style /tokenize and /detokenize bodies. Everything a client can get wrong is reported
// as an ApiError(400) naming the field, before any slot is taken or any token generated. Unknown
// fields are ignored, as OpenAI-compatible servers usually do, so clients that send extra options
// keep working; but the fields that ask for behaviour elm does not have (the legacy functions and
// function_call) are a 400 with code "unsupported_parameter". Structured output (response_format
// json_object / json_schema, llama.cpp's grammar and json_schema fields) and tools are parsed into
// a grammar here, so a bad schema or grammar is a 400 naming the problem (docs/server.md).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "generation/chat_template.h"
#include "grammar/grammar.h"
#include "sampling/sampler.h"
#include "server/tool_calls.h"

namespace elm {
class TokenTrie;
}

namespace elm::server {

// Limits that keep one request's cost bounded.
inline constexpr int kMaxPromptsPerRequest = 256;  // "prompt": [...] batches (lm-eval sends them)
inline constexpr int kMaxStopStrings = 16;
inline constexpr int kMaxStopStringBytes = 256;
inline constexpr int kMaxTopLogprobs = 20;
inline constexpr int kMaxLogitBias = 1024;

// Options shared by /v1/completions and /v1/chat/completions.
struct GenerationParams {
  int max_tokens = -1;  // -1: not given, the default reply length (DefaultReplyTokens(context),
                        // sampling/defaults.h); any length is clamped to the room in the context
  SamplingParams sampling;
  bool has_seed = false;  // without a seed every request draws a fresh one
  std::vector<std::string> stop;
  std::vector<std::pair<int, float>> logit_bias;  // token id -> added to its logit
  bool ignore_eos = false;                        // extension: keep going past </s>
  int logprobs = -1;  // -1: none; else how many top alternatives to report per token
  bool echo = false;  // completions: return the prompt (and its logprobs) before the completion
  // Structured output: the grammar every reply follows (null: free text), from response_format,
  // "grammar", "json_schema" or active tools; `vocab` is the server's token trie, set by the route.
  std::shared_ptr<const Grammar> grammar;
  std::shared_ptr<const TokenTrie> vocab;
};

// One prompt of a completions request: text to tokenize, or token ids used as given.
struct PromptInput {
  bool is_text = true;
  std::string text;
  std::vector<int> ids;
};

struct CompletionRequest {
  std::string model;
  std::vector<PromptInput> prompts;  // one choice per prompt
  GenerationParams gen;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

struct ChatRequest {
  std::string model;
  std::vector<ChatMessage> messages;  // the tool prompt already added when tools are active
  GenerationParams gen;
  ToolRequest tools;
  bool stream = false;
  bool include_usage = false;
};

struct TokenizeRequest {
  std::string content;
  bool add_special = false;  // prepend BOS as the model's tokenizer would
  bool with_pieces = false;  // [{"id", "piece"}] instead of bare ids
};

// The value each request field takes when left out (elm's one table, sampling/defaults.h), keyed
// by the field's name, for a server whose slots hold `context` positions. GET /v1/models reports
// it as meta.defaults and the chat page starts its settings from it. The seed is not listed: left
// out, every request draws a fresh one.
nlohmann::json RequestDefaultsJson(int context);

// Parses a request body; malformed JSON (including invalid UTF-8) and non-object bodies are 400.
nlohmann::json ParseJsonBody(const std::string& body);

// `vocab_size` bounds token ids given in prompts and logit_bias.
CompletionRequest ParseCompletionRequest(const nlohmann::json& body, int vocab_size);
ChatRequest ParseChatRequest(const nlohmann::json& body, int vocab_size);
TokenizeRequest ParseTokenizeRequest(const nlohmann::json& body);
std::vector<int> ParseDetokenizeRequest(const nlohmann::json& body, int vocab_size);

}  // namespace elm::server
