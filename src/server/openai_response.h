// Response bodies in OpenAI's shapes: completion and chat objects, their streaming chunks, usage,
// and the two logprobs formats (the legacy completions one that lm-evaluation-harness reads, and
// chat's per-token list).
#pragma once

#include <ctime>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/completion_runner.h"
#include "tokenizer/tokenizer.h"

namespace elm::server {

// What every response object of one request repeats.
struct ResponseMeta {
  std::string id;     // "cmpl-..." or "chatcmpl-..."
  std::string model;  // the served model's id
  std::time_t created = 0;
};

// OpenAI's usage object; prompt_tokens_details.cached_tokens: the prompt tokens whose KV came from
// the prefix cache (docs/server.md "Prefix cache").
nlohmann::json UsageJson(int prompt_tokens, int completion_tokens, int cached_tokens);

// Legacy completions logprobs: {"tokens", "token_logprobs", "top_logprobs", "text_offset"}.
// With `echo` the prompt's tokens come first; the very first has null logprob and top_logprobs
// (nothing predicts it). `text_start` is the offset of the first listed token.
nlohmann::json CompletionLogprobsJson(const Tokenizer& tok, std::span<const int> echo_prompt,
                                      std::span<const TokenLogprob> prompt_logprobs,
                                      std::span<const TokenLogprob> generated, size_t text_start);

// Chat logprobs: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}.
nlohmann::json ChatLogprobsJson(const Tokenizer& tok, std::span<const TokenLogprob> generated);

// Objects of /v1/completions.
nlohmann::json CompletionChoice(int index, const std::string& text, nlohmann::json logprobs,
                                const char* finish_reason);
nlohmann::json CompletionObject(const ResponseMeta& meta, nlohmann::json choices,
                                nlohmann::json usage);
// A streaming chunk; finish_reason may be null (nullptr) until the last one.
nlohmann::json CompletionChunk(const ResponseMeta& meta, const std::string& text,
                               nlohmann::json logprobs, const char* finish_reason);

// Objects of /v1/chat/completions.
nlohmann::json ChatObject(const ResponseMeta& meta, const std::string& content,
                          nlohmann::json logprobs, const char* finish_reason, nlohmann::json usage);
// A reply that is a tool call (server/tool_calls.h): message.content null, message.tool_calls
// [{"id", "type": "function", "function": {"name", "arguments": "<JSON text>"}}], finish_reason
// "tool_calls". `call` is {"name", "arguments"}.
nlohmann::json ToolCallJson(const std::string& id, const nlohmann::json& call);
nlohmann::json ChatToolCallObject(const ResponseMeta& meta, const std::string& call_id,
                                  const nlohmann::json& call, nlohmann::json usage);
// `delta` is {"role": "assistant", "content": ""}, {"content": "..."} or {} (the last chunk).
nlohmann::json ChatChunk(const ResponseMeta& meta, nlohmann::json delta, nlohmann::json logprobs,
                         const char* finish_reason);

// The final chunk of stream_options.include_usage: no choices, only usage.
nlohmann::json UsageChunk(const ResponseMeta& meta, const char* object, int prompt_tokens,
                          int completion_tokens, int cached_tokens);

}  // namespace elm::server
