#include "server/tool_calls.h"

#include "base/error.h"
#include "grammar/json_schema.h"
#include "server/api_error.h"

namespace elm::server {

using nlohmann::json;

namespace {

bool ValidToolName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-'))
      return false;
  return true;
}

// The schema of one call {"name": <const>, "arguments": <parameters>}.
// Ordered, so the model writes the name before the arguments.
nlohmann::ordered_json CallSchema(const ToolFunction& f) {
  nlohmann::ordered_json props;
  props["name"] = {{"const", f.name}};
  props["arguments"] = nlohmann::ordered_json::parse(f.parameters.dump());
  nlohmann::ordered_json s;
  s["type"] = "object";
  s["properties"] = props;
  s["required"] = {"name", "arguments"};
  s["additionalProperties"] = false;
  return s;
}

}  // namespace

ToolRequest ParseTools(const json& body) {
  ToolRequest t;
  const auto tools_it = body.find("tools");
  if (tools_it != body.end() && !tools_it->is_null()) {
    const json& tools = *tools_it;
    if (!tools.is_array()) BadParam("tools", "'tools' must be an array");
    for (size_t i = 0; i < tools.size(); ++i) {
      const std::string p = "tools[" + std::to_string(i) + "]";
      const json& tool = tools[i];
      if (!tool.is_object() || tool.value("type", json()) != "function")
        BadParam(p, "'" + p + "' must be {\"type\": \"function\", \"function\": {...}}");
      const auto fn = tool.find("function");
      if (fn == tool.end() || !fn->is_object())
        BadParam(p + ".function", "'" + p + ".function' must be an object");
      ToolFunction f;
      const auto name = fn->find("name");
      if (name == fn->end() || !name->is_string() || !ValidToolName(name->get<std::string>()))
        BadParam(p + ".function.name", "'" + p +
                                           ".function.name' must be 1 to 64 letters, digits, "
                                           "'_' or '-'");
      f.name = name->get<std::string>();
      for (const auto& other : t.functions)
        if (other.name == f.name)
          BadParam(p + ".function.name", "two tools are named '" + f.name + "'");
      const auto desc = fn->find("description");
      if (desc != fn->end() && !desc->is_null()) {
        if (!desc->is_string())
          BadParam(p + ".function.description",
                   "'" + p + ".function.description' must be a string");
        f.description = desc->get<std::string>();
      }
      const auto params = fn->find("parameters");
      f.parameters = params == fn->end() || params->is_null()
                         ? json{{"type", "object"},
                                {"properties", json::object()},
                                {"additionalProperties", false}}
                         : *params;
      try {
        (void)JsonSchemaToGbnf(f.parameters);
      } catch (const Error& e) {
        BadParam(p + ".function.parameters", "'" + p + ".function.parameters': " + e.what());
      }
      t.functions.push_back(std::move(f));
    }
  }
  const auto choice_it = body.find("tool_choice");
  const bool has_choice = choice_it != body.end() && !choice_it->is_null();
  t.choice = t.functions.empty() ? ToolRequest::Choice::kNone : ToolRequest::Choice::kAuto;
  if (!has_choice) return t;
  const json& c = *choice_it;
  if (c.is_string()) {
    const std::string s = c.get<std::string>();
    if (s == "none") {
      t.choice = ToolRequest::Choice::kNone;
    } else if (s == "auto") {
    } else if (s == "required") {
      if (t.functions.empty())
        BadParam("tool_choice", "'tool_choice' \"required\" needs a non-empty 'tools'");
      t.choice = ToolRequest::Choice::kRequired;
    } else {
      BadParam("tool_choice",
               "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": "
               "\"function\", \"function\": {\"name\": ...}}");
    }
    return t;
  }
  if (!c.is_object() || c.value("type", json()) != "function" || !c.contains("function") ||
      !c["function"].is_object() || !c["function"].contains("name") ||
      !c["function"]["name"].is_string())
    BadParam("tool_choice",
             "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", "
             "\"function\": {\"name\": ...}}");
  t.named = c["function"]["name"].get<std::string>();
  bool found = false;
  for (const auto& f : t.functions) found = found || f.name == t.named;
  if (!found)
    BadParam("tool_choice", "'tool_choice' names '" + t.named + "', which is not in 'tools'");
  t.choice = ToolRequest::Choice::kNamed;
  return t;
}

std::string ToolSystemPrompt(const ToolRequest& tools) {
  std::string s = "You can call these tools:\n";
  for (const auto& f : tools.functions) {
    s += "- " + f.name;
    if (!f.description.empty()) s += ": " + f.description;
    s += "\n  arguments (JSON schema): " + f.parameters.dump() + "\n";
  }
  const std::string format = "{\"name\": \"<tool name>\", \"arguments\": {<arguments>}}";
  switch (tools.choice) {
    case ToolRequest::Choice::kNamed:
      s += "Call the tool " + tools.named + " now: reply with only a JSON object " + format + ".";
      break;
    case ToolRequest::Choice::kRequired:
      s += "Call one of the tools now: reply with only a JSON object " + format + ".";
      break;
    default:
      s += "To call a tool, reply with only a JSON object " + format +
           ". Otherwise answer in plain text.";
  }
  return s;
}

std::string ToolCallGbnf(const ToolRequest& tools) {
  nlohmann::ordered_json schema;
  if (tools.choice == ToolRequest::Choice::kNamed) {
    for (const auto& f : tools.functions)
      if (f.name == tools.named) schema = CallSchema(f);
  } else {
    auto any = nlohmann::ordered_json::array();
    for (const auto& f : tools.functions) any.push_back(CallSchema(f));
    if (any.size() == 1) {
      schema = any[0];
    } else {
      schema["anyOf"] = any;
    }
  }
  std::string call = JsonSchemaToGbnf(schema);
  if (tools.choice != ToolRequest::Choice::kAuto) return call;
  // "auto": the call, or text that starts with neither '{' nor a space (the reply keeps a leading
  // space, TextOutput::continuation: " {" is neither a call nor free text). The schema grammar's
  // first line is its root rule; it becomes tool-call.
  const std::string root = "root ::= ";
  ELM_CHECK(call.starts_with(root));
  return "root ::= tool-call | free-text\nfree-text ::= [^{ ] .*\ntool-call ::= " +
         call.substr(root.size());
}

void AddToolPrompt(const ToolRequest& tools, std::vector<ChatMessage>& messages) {
  const std::string prompt = ToolSystemPrompt(tools);
  if (!messages.empty() && messages.front().role == "system") {
    messages.front().content += (messages.front().content.empty() ? "" : "\n\n") + prompt;
  } else {
    messages.insert(messages.begin(), ChatMessage{"system", prompt});
  }
}

std::optional<json> ParseToolCall(const ToolRequest& tools, const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception&) {
    return std::nullopt;
  }
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string() || !j.contains("arguments") ||
      !j["arguments"].is_object())
    return std::nullopt;
  for (const auto& f : tools.functions)
    if (f.name == j["name"].get<std::string>())
      return json{{"name", j["name"]}, {"arguments", j["arguments"]}};
  return std::nullopt;
}

std::string ToolCallsAsText(const json& tool_calls, const std::string& param) {
  if (!tool_calls.is_array()) BadParam(param, "'" + param + "' must be an array");
  std::string out;
  for (size_t i = 0; i < tool_calls.size(); ++i) {
    const json& c = tool_calls[i];
    const std::string p = param + "[" + std::to_string(i) + "]";
    if (!c.is_object() || !c.contains("function") || !c["function"].is_object() ||
        !c["function"].contains("name") || !c["function"]["name"].is_string())
      BadParam(p, "'" + p +
                      "' must be {\"type\": \"function\", \"function\": {\"name\", "
                      "\"arguments\"}}");
    const json& fn = c["function"];
    json args = json::object();
    if (fn.contains("arguments") && fn["arguments"].is_string()) {
      try {
        args = json::parse(fn["arguments"].get<std::string>());
      } catch (const json::exception&) {
        args = fn["arguments"];
      }
    } else if (fn.contains("arguments")) {
      args = fn["arguments"];
    }
    out += std::string(out.empty() ? "" : "\n") + "{\"name\": " + fn["name"].dump() +
           ", \"arguments\": " + args.dump() + "}";
  }
  return out;
}

}  // namespace elm::server
