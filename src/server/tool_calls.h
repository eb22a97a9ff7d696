// OpenAI tools / tool_choice for OpenELM-Instruct, which has no tool format of its own
// (docs/server.md, "Tools"): the tools are described in the system prompt, the reply is
// constrained by a grammar to one JSON tool call {"name": ..., "arguments": {...}} (or, with
// tool_choice "auto", either that or plain text that does not start with '{'), and a reply that is
// a tool call comes back as message.tool_calls with finish_reason "tool_calls".
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "generation/chat_template.h"

namespace elm::server {

struct ToolFunction {
  std::string name;
  std::string description;
  nlohmann::json parameters;  // a JSON schema of the arguments object
};

struct ToolRequest {
  enum class Choice { kNone, kAuto, kRequired, kNamed };
  std::vector<ToolFunction> functions;  // empty: no tools
  Choice choice = Choice::kNone;
  std::string named;  // kNamed: the function that must be called

  bool active() const { return !functions.empty() && choice != Choice::kNone; }
};

// "tools" and "tool_choice" of a chat request; a malformed one is a 400 naming the field (a bad
// parameters schema included).
ToolRequest ParseTools(const nlohmann::json& body);

// The text added to the system prompt: the tools, their parameters and the reply format.
std::string ToolSystemPrompt(const ToolRequest& tools);

// The GBNF every reply must follow while tools are active.
std::string ToolCallGbnf(const ToolRequest& tools);

// The messages with the tool prompt added to the system message (a system message is put first
// when there is none).
void AddToolPrompt(const ToolRequest& tools, std::vector<ChatMessage>& messages);

// The call in a reply: {"name", "arguments"} when `text` is a JSON tool call of one of the tools,
// nothing otherwise (plain text, or a call cut short by max_tokens).
std::optional<nlohmann::json> ParseToolCall(const ToolRequest& tools, const std::string& text);

// An assistant message's tool_calls as the text the model would have written (for history).
std::string ToolCallsAsText(const nlohmann::json& tool_calls, const std::string& param);

}  // namespace elm::server
