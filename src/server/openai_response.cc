#include "server/openai_response.h"

#include <cstdio>

namespace elm::server {

using nlohmann::json;

namespace {

// Raw bytes of a token as it appears in text (chat logprobs' "bytes"): a byte-fallback token is
// its one byte even though that byte alone may not be UTF-8.
json TokenBytes(const Tokenizer& tok, int id) {
  std::string text = TokenText(tok, id);
  unsigned byte = 0;
  if (text.starts_with("bytes:\\x") && std::sscanf(text.c_str() + 8, "%2x", &byte) == 1)
    text = std::string(1, static_cast<char>(byte));
  json out = json::array();
  for (unsigned char c : text) out.push_back(c);
  return out;
}

json Nullable(const char* s) {
  return s ? json(s) : json(nullptr);
}

}  // namespace

json UsageJson(int prompt_tokens, int completion_tokens, int cached_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", cached_tokens}}}};
}

json CompletionLogprobsJson(const Tokenizer& tok, std::span<const int> echo_prompt,
                            std::span<const TokenLogprob> prompt_logprobs,
                            std::span<const TokenLogprob> generated, size_t text_start) {
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(),
       offsets = json::array();
  size_t offset = text_start;
  auto add = [&](int id, const TokenLogprob* lp) {
    const std::string text = TokenText(tok, id);
    tokens.push_back(text);
    offsets.push_back(offset);
    offset += text.size();
    if (!lp) {
      token_logprobs.push_back(nullptr);
      top.push_back(nullptr);
      return;
    }
    token_logprobs.push_back(lp->logprob);
    json alternatives = json::object();
    for (const auto& [alt, logprob] : lp->top) {
      const std::string key = TokenText(tok, alt);
      // Several ids can share a text; the dict keeps the likeliest (listed first).
      if (!alternatives.contains(key)) alternatives[key] = logprob;
    }
    top.push_back(alternatives);
  };
  for (size_t i = 0; i < echo_prompt.size(); ++i)
    add(echo_prompt[i], i == 0 ? nullptr : &prompt_logprobs[i - 1]);
  for (const auto& lp : generated) add(lp.id, &lp);
  return {{"tokens", tokens},
          {"token_logprobs", token_logprobs},
          {"top_logprobs", top},
          {"text_offset", offsets}};
}

json ChatLogprobsJson(const Tokenizer& tok, std::span<const TokenLogprob> generated) {
  json content = json::array();
  for (const auto& lp : generated) {
    json alternatives = json::array();
    for (const auto& [alt, logprob] : lp.top)
      alternatives.push_back(
          {{"token", TokenText(tok, alt)}, {"logprob", logprob}, {"bytes", TokenBytes(tok, alt)}});
    content.push_back({{"token", TokenText(tok, lp.id)},
                       {"logprob", lp.logprob},
                       {"bytes", TokenBytes(tok, lp.id)},
                       {"top_logprobs", alternatives}});
  }
  return {{"content", content}};
}

json CompletionChoice(int index, const std::string& text, json logprobs,
                      const char* finish_reason) {
  return {{"text", text},
          {"index", index},
          {"logprobs", std::move(logprobs)},
          {"finish_reason", Nullable(finish_reason)}};
}

json CompletionObject(const ResponseMeta& meta, json choices, json usage) {
  return {{"id", meta.id},
          {"object", "text_completion"},
          {"created", meta.created},
          {"model", meta.model},
          {"choices", std::move(choices)},
          {"usage", std::move(usage)},
          {"system_fingerprint", nullptr}};
}

json CompletionChunk(const ResponseMeta& meta, const std::string& text, json logprobs,
                     const char* finish_reason) {
  return {
      {"id", meta.id},
      {"object", "text_completion"},
      {"created", meta.created},
      {"model", meta.model},
      {"choices", json::array({CompletionChoice(0, text, std::move(logprobs), finish_reason)})}};
}

json ChatObject(const ResponseMeta& meta, const std::string& content, json logprobs,
                const char* finish_reason, json usage) {
  json choice = {{"index", 0},
                 {"message", {{"role", "assistant"}, {"content", content}}},
                 {"logprobs", std::move(logprobs)},
                 {"finish_reason", Nullable(finish_reason)}};
  return {{"id", meta.id},
          {"object", "chat.completion"},
          {"created", meta.created},
          {"model", meta.model},
          {"choices", json::array({choice})},
          {"usage", std::move(usage)},
          {"system_fingerprint", nullptr}};
}

json ToolCallJson(const std::string& id, const json& call) {
  return {{"id", id},
          {"type", "function"},
          {"function", {{"name", call["name"]}, {"arguments", call["arguments"].dump()}}}};
}

json ChatToolCallObject(const ResponseMeta& meta, const std::string& call_id, const json& call,
                        json usage) {
  json obj = ChatObject(meta, "", nullptr, "tool_calls", std::move(usage));
  json& message = obj["choices"][0]["message"];
  message["content"] = nullptr;
  message["tool_calls"] = json::array({ToolCallJson(call_id, call)});
  return obj;
}

json ChatChunk(const ResponseMeta& meta, json delta, json logprobs, const char* finish_reason) {
  json choice = {{"index", 0},
                 {"delta", std::move(delta)},
                 {"logprobs", std::move(logprobs)},
                 {"finish_reason", Nullable(finish_reason)}};
  return {{"id", meta.id},
          {"object", "chat.completion.chunk"},
          {"created", meta.created},
          {"model", meta.model},
          {"choices", json::array({choice})}};
}

json UsageChunk(const ResponseMeta& meta, const char* object, int prompt_tokens,
                int completion_tokens, int cached_tokens) {
  return {{"id", meta.id},
          {"object", object},
          {"created", meta.created},
          {"model", meta.model},
          {"choices", json::array()},
          {"usage", UsageJson(prompt_tokens, completion_tokens, cached_tokens)}};
}

}  // namespace elm::server
