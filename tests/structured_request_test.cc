// Tests for structured output and tools in the server's request parsing (src/server/
// openai_request.cc, tool_calls.cc): response_format, grammar and json_schema become a grammar,
// bad ones are 400s naming the field, and tools become a system prompt plus a call grammar whose
// replies ParseToolCall reads back. End to end with the openai npm client:
// tests/openai_client/structured_output.mjs.
#include <gtest/gtest.h>

#include <string>

#include <nlohmann/json.hpp>

#include "grammar/grammar_matcher.h"
#include "server/api_error.h"
#include "server/openai_request.h"
#include "server/tool_calls.h"

namespace elm::server {
namespace structured_request_test {

using nlohmann::json;

constexpr int kVocab = 32000;

json Chat(json extra) {
  json body = {{"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  for (const auto& [k, v] : extra.items()) body[k] = v;
  return body;
}

std::string ErrorOf(const json& body) {
  try {
    (void)ParseChatRequest(body, kVocab);
  } catch (const ApiError& e) {
    return std::to_string(e.status()) + " " + e.what();
  }
  return "";
}

bool GrammarAccepts(const GenerationParams& g, const std::string& text) {
  return g.grammar && GrammarMatcher(*g.grammar).Accepts(text);
}

TEST(StructuredRequest, ResponseFormatBecomesAGrammar) {
  const auto text = ParseChatRequest(Chat({{"response_format", {{"type", "text"}}}}), kVocab);
  EXPECT_EQ(text.gen.grammar, nullptr);
  const auto obj = ParseChatRequest(Chat({{"response_format", {{"type", "json_object"}}}}), kVocab);
  EXPECT_TRUE(GrammarAccepts(obj.gen, R"({"a": [1, true]})"));
  EXPECT_FALSE(GrammarAccepts(obj.gen, "[1]"));
  const json schema = {
      {"type", "object"}, {"properties", {{"n", {{"type", "integer"}}}}}, {"required", {"n"}}};
  const auto js = ParseChatRequest(
      Chat({{"response_format",
             {{"type", "json_schema"}, {"json_schema", {{"name", "x"}, {"schema", schema}}}}}}),
      kVocab);
  EXPECT_TRUE(GrammarAccepts(js.gen, R"({"n": 3})"));
  EXPECT_FALSE(GrammarAccepts(js.gen, R"({"n": "3"})"));
  // llama.cpp's fields, on completions too.
  const auto g = ParseCompletionRequest({{"prompt", "x"}, {"grammar", "root ::= \"a\"+"}}, kVocab);
  EXPECT_TRUE(GrammarAccepts(g.gen, "aaa"));
  const auto s = ParseCompletionRequest({{"prompt", "x"}, {"json_schema", schema}}, kVocab);
  EXPECT_TRUE(GrammarAccepts(s.gen, R"({"n": -1})"));
}

TEST(StructuredRequest, BadSchemasAndGrammarsAre400NamingTheProblem) {
  const std::string pattern = ErrorOf(
      Chat({{"response_format",
             {{"type", "json_schema"},
              {"json_schema",
               {{"schema",
                 {{"type", "object"},
                  {"properties", {{"id", {{"type", "string"}, {"pattern", "^a"}}}}}}}}}}}}));
  EXPECT_NE(pattern.find("400"), std::string::npos) << pattern;
  EXPECT_NE(pattern.find("response_format.json_schema.schema"), std::string::npos) << pattern;
  EXPECT_NE(pattern.find("#/properties/id: the keyword 'pattern'"), std::string::npos) << pattern;
  const std::string gbnf = ErrorOf(Chat({{"grammar", "root ::= (\"a\""}}));
  EXPECT_NE(gbnf.find("'grammar' is not usable: grammar:1:10: unclosed '('"), std::string::npos)
      << gbnf;
  EXPECT_NE(ErrorOf(Chat({{"response_format", {{"type", "xml"}}}})).find("response_format.type"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Chat({{"grammar", "root ::= \"a\""}, {"json_schema", json::object()}}))
                .find("at most one"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Chat({{"functions", {{{"name", "f"}}}}})).find("use 'tools'"),
            std::string::npos);
}

json WeatherTool() {
  return {{"type", "function"},
          {"function",
           {{"name", "get_weather"},
            {"description", "Weather in a city"},
            {"parameters",
             {{"type", "object"},
              {"properties", {{"city", {{"type", "string"}}}}},
              {"required", {"city"}}}}}}};
}

TEST(StructuredRequest, ToolsAddASystemPromptAndACallGrammar) {
  const auto r = ParseChatRequest(
      Chat({{"tools", {WeatherTool()}},
            {"tool_choice", {{"type", "function"}, {"function", {{"name", "get_weather"}}}}}}),
      kVocab);
  ASSERT_TRUE(r.tools.active());
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_NE(r.messages[0].content.find("get_weather: Weather in a city"), std::string::npos);
  const std::string call = R"({"name": "get_weather", "arguments": {"city": "Oslo"}})";
  EXPECT_TRUE(GrammarAccepts(r.gen, call));
  EXPECT_FALSE(GrammarAccepts(r.gen, R"({"name": "other", "arguments": {"city": "Oslo"}})"));
  EXPECT_FALSE(GrammarAccepts(r.gen, "It is sunny."));
  const auto parsed = ParseToolCall(r.tools, call);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ((*parsed)["arguments"]["city"], "Oslo");
  EXPECT_FALSE(ParseToolCall(r.tools, "It is sunny.").has_value());
  EXPECT_FALSE(ParseToolCall(r.tools, R"({"name": "get_weather", "arguments": {)").has_value());

  // "auto": a call, or text that does not start with '{'.
  const auto a = ParseChatRequest(Chat({{"tools", {WeatherTool()}}}), kVocab);
  EXPECT_TRUE(GrammarAccepts(a.gen, call));
  EXPECT_TRUE(GrammarAccepts(a.gen, "It is sunny."));
  EXPECT_FALSE(GrammarAccepts(a.gen, "{not a call"));
  // "none": no tools at all.
  const auto none =
      ParseChatRequest(Chat({{"tools", {WeatherTool()}}, {"tool_choice", "none"}}), kVocab);
  EXPECT_FALSE(none.tools.active());
  EXPECT_EQ(none.gen.grammar, nullptr);
  EXPECT_EQ(none.messages.size(), 1u);
}

TEST(StructuredRequest, ToolHistoryAndErrors) {
  const json body = {
      {"messages",
       {{{"role", "user"}, {"content", "Weather?"}},
        {{"role", "assistant"},
         {"content", nullptr},
         {"tool_calls",
          {{{"id", "call_1"},
            {"type", "function"},
            {"function", {{"name", "get_weather"}, {"arguments", "{\"city\":\"Oslo\"}"}}}}}}},
        {{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", "sunny"}}}}};
  const auto r = ParseChatRequest(body, kVocab);
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[1].content, R"({"name": "get_weather", "arguments": {"city":"Oslo"}})");
  EXPECT_EQ(r.messages[2].role, "user");
  EXPECT_EQ(r.messages[2].content, "Tool result (call_1): sunny");

  EXPECT_NE(ErrorOf(Chat({{"tools", {WeatherTool()}},
                          {"tool_choice", {{"type", "function"}, {"function", {{"name", "x"}}}}}}))
                .find("names 'x', which is not in 'tools'"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Chat({{"tool_choice", "required"}})).find("needs a non-empty 'tools'"),
            std::string::npos);
  json bad = WeatherTool();
  bad["function"]["parameters"]["properties"]["city"]["format"] = "city";
  EXPECT_NE(ErrorOf(Chat({{"tools", {bad}}})).find("tools[0].function.parameters"),
            std::string::npos);
  EXPECT_NE(
      ErrorOf(Chat({{"tools", {WeatherTool()}}, {"response_format", {{"type", "json_object"}}}}))
          .find("cannot be combined"),
      std::string::npos);
}

}  // namespace structured_request_test
}  // namespace elm::server
