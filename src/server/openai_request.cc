#include "server/openai_request.h"

#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "grammar/grammar_matcher.h"
#include "grammar/json_schema.h"
#include "sampling/defaults.h"
#include "server/api_error.h"

namespace elm::server {

using nlohmann::json;

namespace {

// The field, or nullptr when absent or null (OpenAI clients send null for "unset").
const json* Field(const json& body, const char* key) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

bool GetBool(const json& body, const char* key, bool fallback) {
  const json* v = Field(body, key);
  if (!v) return fallback;
  if (!v->is_boolean()) BadParam(key, std::string("'") + key + "' must be a boolean");
  return v->get<bool>();
}

double GetNumber(const json& body, const char* key, double fallback, double lo, double hi) {
  const json* v = Field(body, key);
  if (!v) return fallback;
  if (!v->is_number()) BadParam(key, std::string("'") + key + "' must be a number");
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    BadParam(key, std::string("'") + key + "' must be between " + json(lo).dump() + " and " +
                      json(hi).dump() + ", got " + v->dump());
  return x;
}

// An integer field (a float with an integral value such as 5.0 is accepted too). Values above
// `hi` are an error unless `clamp_high`, when they become `hi`.
int64_t GetInteger(const json& body, const char* key, int64_t fallback, int64_t lo, int64_t hi,
                   bool clamp_high = false) {
  const json* v = Field(body, key);
  if (!v) return fallback;
  const std::string name = std::string("'") + key + "'";
  if (!v->is_number()) BadParam(key, name + " must be an integer");
  if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(hi)) {
      if (clamp_high) return hi;
      BadParam(key, name + " must be at most " + std::to_string(hi) + ", got " + v->dump());
    }
    return static_cast<int64_t>(u);
  }
  double x;
  if (v->is_number_integer()) {
    x = static_cast<double>(v->get<int64_t>());
  } else {
    x = v->get<double>();
    if (!std::isfinite(x) || std::floor(x) != x) BadParam(key, name + " must be an integer");
  }
  if (x < static_cast<double>(lo))
    BadParam(key, name + " must be at least " + std::to_string(lo) + ", got " + v->dump());
  if (x > static_cast<double>(hi)) {
    if (clamp_high) return hi;
    BadParam(key, name + " must be at most " + std::to_string(hi) + ", got " + v->dump());
  }
  return v->is_number_integer() ? v->get<int64_t>() : static_cast<int64_t>(x);
}

int ParseTokenId(const json& v, int vocab_size, const char* param) {
  if (!v.is_number_integer())
    BadParam(param, std::string("'") + param + "' token ids must be integers, got " + v.dump());
  const int64_t id =
      v.is_number_unsigned()
          ? static_cast<int64_t>(std::min<uint64_t>(v.get<uint64_t>(), uint64_t{INT64_MAX}))
          : v.get<int64_t>();
  if (id < 0 || id >= vocab_size)
    BadParam(param,
             "token id " + v.dump() + " is out of range [0, " + std::to_string(vocab_size) + ")");
  return static_cast<int>(id);
}

std::vector<int> ParseIdArray(const json& arr, int vocab_size, const char* param) {
  std::vector<int> ids;
  ids.reserve(arr.size());
  for (const auto& v : arr) ids.push_back(ParseTokenId(v, vocab_size, param));
  return ids;
}

std::vector<std::string> ParseStop(const json& body) {
  const json* v = Field(body, "stop");
  std::vector<std::string> out;
  if (!v) return out;
  auto add = [&](const json& s) {
    if (!s.is_string()) BadParam("stop", "'stop' must be a string or an array of strings");
    const auto& str = s.get_ref<const std::string&>();
    if (str.empty()) return;  // an empty stop string would stop before the first token
    if (str.size() > static_cast<size_t>(kMaxStopStringBytes))
      BadParam("stop",
               "stop strings are limited to " + std::to_string(kMaxStopStringBytes) + " bytes");
    out.push_back(str);
  };
  if (v->is_array()) {
    if (v->size() > static_cast<size_t>(kMaxStopStrings))
      BadParam("stop", "at most " + std::to_string(kMaxStopStrings) + " stop strings");
    for (const auto& s : *v) add(s);
  } else {
    add(*v);
  }
  return out;
}

std::vector<std::pair<int, float>> ParseLogitBias(const json& body, int vocab_size) {
  const json* v = Field(body, "logit_bias");
  std::vector<std::pair<int, float>> out;
  if (!v) return out;
  if (!v->is_object()) BadParam("logit_bias", "'logit_bias' must be an object {token_id: bias}");
  if (v->size() > static_cast<size_t>(kMaxLogitBias))
    BadParam("logit_bias", "at most " + std::to_string(kMaxLogitBias) + " logit_bias entries");
  for (const auto& [key, bias] : v->items()) {
    char* end = nullptr;
    const long id = std::strtol(key.c_str(), &end, 10);
    if (key.empty() || *end != '\0' || id < 0 || id >= vocab_size)
      BadParam("logit_bias", "'logit_bias' key '" + key + "' is not a token id in [0, " +
                                 std::to_string(vocab_size) + ")");
    if (!bias.is_number() || !std::isfinite(bias.get<double>()) || bias.get<double>() < -100 ||
        bias.get<double>() > 100)
      BadParam("logit_bias", "'logit_bias' values must be numbers between -100 and 100");
    out.emplace_back(static_cast<int>(id), bias.get<float>());
  }
  return out;
}

// A field OpenAI defines that elm does not implement yet: a 400 saying so, never silently ignored
// (a client that asked for JSON mode or tools must not take plain text for them).
[[noreturn]] void Unsupported(const std::string& param, const std::string& what) {
  throw ApiError(400,
                 "'" + param + "' is not supported by this server (" + what +
                     "); leave it out to get plain text",
                 "invalid_request_error", param, "unsupported_parameter");
}

void RejectUnsupported(const json& body) {
  if (const json* f = Field(body, "functions"); f && !(f->is_array() && f->empty()))
    Unsupported("functions", "the legacy function calling is not implemented; use 'tools'");
  if (const json* fc = Field(body, "function_call"); fc && *fc != "none")
    Unsupported("function_call", "the legacy function calling is not implemented; use 'tools'");
}

// A grammar from GBNF text, checked down to its first parse state (so an over-ambiguous grammar
// is a 400 too, not a failure in the middle of a reply).
std::shared_ptr<const Grammar> CheckedGrammar(const std::string& gbnf, const std::string& param,
                                              const char* origin) {
  try {
    auto g = std::make_shared<const Grammar>(ParseGbnf(gbnf, origin));
    (void)GrammarMatcher(*g).Initial();
    return g;
  } catch (const Error& e) {
    BadParam(param, "'" + param + "' is not usable: " + e.what());
  }
}

std::shared_ptr<const Grammar> SchemaGrammar(const json& schema, const std::string& param) {
  std::string gbnf;
  try {
    gbnf = JsonSchemaToGbnf(schema);
  } catch (const Error& e) {
    BadParam(param, "'" + param + "' is not a supported JSON schema: " + e.what());
  }
  return CheckedGrammar(gbnf, param, "JSON schema grammar");
}

// response_format ({"type": "text" | "json_object" | "json_schema"}) and llama.cpp's "grammar"
// (GBNF text) and "json_schema" (a schema) fields; at most one of them.
std::shared_ptr<const Grammar> ParseStructuredOutput(const json& body) {
  int given = 0;
  std::shared_ptr<const Grammar> g;
  if (const json* rf = Field(body, "response_format")) {
    if (!rf->is_object() || !rf->contains("type") || !(*rf)["type"].is_string())
      BadParam("response_format", "'response_format' must be an object with a string 'type'");
    const std::string type = (*rf)["type"].get<std::string>();
    if (type == "json_object") {
      g = CheckedGrammar(JsonObjectGbnf(), "response_format", "JSON object grammar");
      ++given;
    } else if (type == "json_schema") {
      const json* js = Field(*rf, "json_schema");
      if (!js || !js->is_object())
        BadParam("response_format.json_schema",
                 "'response_format.json_schema' must be an object {\"name\", \"schema\"}");
      const json* schema = Field(*js, "schema");
      g = schema ? SchemaGrammar(*schema, "response_format.json_schema.schema")
                 : CheckedGrammar(JsonObjectGbnf(), "response_format", "JSON object grammar");
      ++given;
    } else if (type != "text") {
      BadParam(
          "response_format.type",
          "'response_format.type' must be \"text\", \"json_object\" or \"json_schema\", got \"" +
              type + "\"");
    }
  }
  if (const json* gr = Field(body, "grammar")) {
    if (!gr->is_string()) BadParam("grammar", "'grammar' must be a string of GBNF rules");
    g = CheckedGrammar(gr->get<std::string>(), "grammar", "grammar");
    ++given;
  }
  if (const json* js = Field(body, "json_schema")) {
    g = SchemaGrammar(*js, "json_schema");
    ++given;
  }
  if (given > 1)
    BadParam("response_format",
             "give at most one of 'response_format' (json_object, json_schema), 'grammar' and "
             "'json_schema'");
  return g;
}

// Fields common to both endpoints. A field left out takes the value of elm's one table of
// defaults (sampling/defaults.h, docs/sampling.md), the same as `elm generate`, `elm chat` and the
// chat page.
void ParseCommon(const json& body, int vocab_size, GenerationParams& g, bool* stream,
                 bool* include_usage, std::string* model) {
  RejectUnsupported(body);
  if (const json* m = Field(body, "model")) {
    if (!m->is_string()) BadParam("model", "'model' must be a string");
    *model = m->get<std::string>();
  }
  if (GetInteger(body, "n", 1, 1, 1) != 1) BadParam("n", "only n = 1 is supported");
  const SamplingParams d = DefaultSamplingParams();
  SamplingParams& s = g.sampling;
  s.temperature = static_cast<float>(GetNumber(body, "temperature", d.temperature, 0.0, 100.0));
  s.top_p = static_cast<float>(GetNumber(body, "top_p", d.top_p, 0.0, 1.0));
  if (s.top_p <= 0.0f) BadParam("top_p", "'top_p' must be greater than 0");
  s.top_k = static_cast<int>(GetInteger(body, "top_k", d.top_k, 0, INT_MAX, /*clamp_high=*/true));
  s.min_p = static_cast<float>(GetNumber(body, "min_p", d.min_p, 0.0, 1.0));
  const char* rep_key = Field(body, "repeat_penalty") ? "repeat_penalty" : "repetition_penalty";
  s.repetition_penalty =
      static_cast<float>(GetNumber(body, rep_key, d.repetition_penalty, 0.0, 100.0));
  if (s.repetition_penalty <= 0.0f) BadParam(rep_key, std::string("'") + rep_key + "' must be > 0");
  s.repetition_window = static_cast<int>(
      GetInteger(body, "repeat_last_n", d.repetition_window, -1, INT_MAX, /*clamp_high=*/true));
  s.presence_penalty =
      static_cast<float>(GetNumber(body, "presence_penalty", d.presence_penalty, -2.0, 2.0));
  s.frequency_penalty =
      static_cast<float>(GetNumber(body, "frequency_penalty", d.frequency_penalty, -2.0, 2.0));
  if (const json* seed = Field(body, "seed")) {
    if (!seed->is_number_integer()) BadParam("seed", "'seed' must be an integer");
    s.seed = seed->is_number_unsigned() ? seed->get<uint64_t>()
                                        : static_cast<uint64_t>(seed->get<int64_t>());
    g.has_seed = true;
  }
  try {
    ValidateSamplingParams(s);  // backstop: the checks above should have caught everything
  } catch (const Error& e) {
    throw ApiError(400, e.what());
  }
  g.stop = ParseStop(body);
  g.logit_bias = ParseLogitBias(body, vocab_size);
  g.ignore_eos = GetBool(body, "ignore_eos", false);
  g.grammar = ParseStructuredOutput(body);
  *stream = GetBool(body, "stream", false);
  if (const json* so = Field(body, "stream_options")) {
    if (!so->is_object()) BadParam("stream_options", "'stream_options' must be an object");
    *include_usage = GetBool(*so, "include_usage", false);
  }
}

std::vector<PromptInput> ParsePrompt(const json& body, int vocab_size) {
  const json* p = Field(body, "prompt");
  if (!p) BadParam("prompt", "'prompt' is required");
  std::vector<PromptInput> out;
  const char* shape =
      "'prompt' must be a string, an array of strings, an array of token ids or an array of "
      "token-id arrays";
  if (p->is_string()) {
    out.push_back({true, p->get<std::string>(), {}});
    return out;
  }
  if (!p->is_array() || p->empty()) BadParam("prompt", shape);
  const json& first = p->front();
  if (first.is_number()) {  // one prompt given as token ids
    out.push_back({false, {}, ParseIdArray(*p, vocab_size, "prompt")});
    return out;
  }
  if (p->size() > static_cast<size_t>(kMaxPromptsPerRequest))
    BadParam("prompt", "at most " + std::to_string(kMaxPromptsPerRequest) + " prompts per request");
  for (const auto& item : *p) {
    if (first.is_string() && item.is_string()) {
      out.push_back({true, item.get<std::string>(), {}});
    } else if (first.is_array() && item.is_array()) {
      if (item.empty()) BadParam("prompt", "a token-id prompt is empty");
      out.push_back({false, {}, ParseIdArray(item, vocab_size, "prompt")});
    } else {
      BadParam("prompt", shape);
    }
  }
  return out;
}

std::string MessageContent(const json& content, size_t index) {
  const std::string param = "messages[" + std::to_string(index) + "].content";
  if (content.is_null()) return {};
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) BadParam(param, "'" + param + "' must be a string or an array of parts");
  std::string text;
  for (const auto& part : content) {
    if (!part.is_object() || !part.contains("type") || part["type"] != "text" ||
        !part.contains("text") || !part["text"].is_string())
      BadParam(param,
               "only text content parts ({\"type\": \"text\", \"text\": ...}) are supported");
    text += part["text"].get<std::string>();
  }
  return text;
}

// Follows a second parse of a body that failed to parse, to name the field the failure is in:
// "max_tokens", "messages[1].content", "logit_bias.42" (empty at the top level). Used only on the
// error path, so valid bodies are parsed once.
class FailedFieldFinder : public nlohmann::json_sax<json> {
 public:
  const std::string& path() const { return path_; }

  bool null() override { return Value(); }
  bool boolean(bool) override { return Value(); }
  bool number_integer(number_integer_t) override { return Value(); }
  bool number_unsigned(number_unsigned_t) override { return Value(); }
  bool number_float(number_float_t, const string_t&) override { return Value(); }
  bool string(string_t&) override { return Value(); }
  bool binary(binary_t&) override { return Value(); }
  bool start_object(std::size_t) override { return Open(false); }
  bool start_array(std::size_t) override { return Open(true); }
  bool key(string_t& k) override {
    levels_.back().key = k;
    return true;
  }
  bool end_object() override { return Close(); }
  bool end_array() override { return Close(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    for (const Level& l : levels_) {
      if (l.array)
        path_ += "[" + std::to_string(l.index) + "]";
      else
        path_ += (path_.empty() ? "" : ".") + l.key;
    }
    return false;
  }

 private:
  struct Level {
    bool array = false;
    std::string key;   // objects: the member being read
    size_t index = 0;  // arrays: the element being read
  };
  bool Value() {
    if (!levels_.empty() && levels_.back().array) ++levels_.back().index;
    return true;
  }
  bool Open(bool array) {
    levels_.push_back({array, {}, 0});
    return true;
  }
  bool Close() {
    levels_.pop_back();
    return Value();
  }
  std::vector<Level> levels_;
  std::string path_;
};

}  // namespace

json RequestDefaultsJson(int context) {
  const SamplingParams d = DefaultSamplingParams();
  // The float as it is written in the table (0.8, not 0.800000011920929 from widening it).
  auto shortest = [](float f) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.7g", static_cast<double>(f));
    return std::strtod(buf, nullptr);
  };
  return {{"max_tokens", DefaultReplyTokens(context)},
          {"temperature", shortest(d.temperature)},
          {"top_p", shortest(d.top_p)},
          {"top_k", d.top_k},
          {"min_p", shortest(d.min_p)},
          {"repetition_penalty", shortest(d.repetition_penalty)},
          {"repeat_last_n", d.repetition_window},
          {"presence_penalty", shortest(d.presence_penalty)},
          {"frequency_penalty", shortest(d.frequency_penalty)}};
}

json ParseJsonBody(const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::out_of_range& e) {
    // A number beyond double's range (1e400): the syntax is valid, the value is not representable.
    FailedFieldFinder finder;
    json::sax_parse(body, &finder);
    const std::string& field = finder.path();
    if (field.empty())
      throw ApiError(400, std::string("the request body is not valid JSON: ") + e.what());
    BadParam(field, "'" + field + "' holds a number too large to represent: " + e.what());
  } catch (const json::exception& e) {
    // nlohmann's messages name the byte offset, which is what a client needs to find the fault.
    throw ApiError(400, std::string("the request body is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw ApiError(400, "the request body must be a JSON object");
  return j;
}

CompletionRequest ParseCompletionRequest(const json& body, int vocab_size) {
  CompletionRequest r;
  r.prompts = ParsePrompt(body, vocab_size);
  ParseCommon(body, vocab_size, r.gen, &r.stream, &r.include_usage, &r.model);
  r.gen.max_tokens =
      static_cast<int>(GetInteger(body, "max_tokens", -1, 0, INT_MAX, /*clamp_high=*/true));
  r.gen.echo = GetBool(body, "echo", false);
  r.gen.logprobs = static_cast<int>(GetInteger(body, "logprobs", -1, 0, kMaxTopLogprobs));
  if (GetInteger(body, "best_of", 1, 1, 1) != 1)
    BadParam("best_of", "only best_of = 1 is supported");
  if (Field(body, "suffix")) BadParam("suffix", "'suffix' is not supported");
  if (r.stream && r.prompts.size() > 1)
    BadParam("prompt", "streaming supports a single prompt per request");
  return r;
}

ChatRequest ParseChatRequest(const json& body, int vocab_size) {
  ChatRequest r;
  const json* msgs = Field(body, "messages");
  if (!msgs) BadParam("messages", "'messages' is required");
  if (!msgs->is_array() || msgs->empty())
    BadParam("messages", "'messages' must be a non-empty array");
  for (size_t i = 0; i < msgs->size(); ++i) {
    const json& m = (*msgs)[i];
    const std::string param = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) BadParam(param, "'" + param + "' must be an object");
    const auto role = m.find("role");
    if (role == m.end() || !role->is_string())
      BadParam(param + ".role", "'" + param + ".role' must be a string");
    std::string r_name = role->get<std::string>();
    if (r_name == "developer") r_name = "system";  // OpenAI's newer name for the system role
    if (r_name != "system" && r_name != "user" && r_name != "assistant" && r_name != "tool")
      BadParam(param + ".role", "unsupported role '" + r_name +
                                    "' (expected system, developer, user, assistant or tool)");
    const auto content = m.find("content");
    std::string text = content == m.end() ? std::string() : MessageContent(*content, i);
    // Tool turns in OpenELM-Instruct's three roles (docs/server.md, "Tools"): an assistant's
    // calls as the JSON it writes, a tool's result as a user turn that says so.
    if (r_name == "assistant" && m.contains("tool_calls") && !m["tool_calls"].is_null()) {
      const std::string calls = ToolCallsAsText(m["tool_calls"], param + ".tool_calls");
      text = text.empty() ? calls : text + "\n" + calls;
    }
    if (r_name == "tool") {
      std::string who;
      if (m.contains("name") && m["name"].is_string()) who = m["name"].get<std::string>();
      if (who.empty() && m.contains("tool_call_id") && m["tool_call_id"].is_string())
        who = m["tool_call_id"].get<std::string>();
      text = "Tool result" + (who.empty() ? std::string() : " (" + who + ")") + ": " + text;
      r_name = "user";
    }
    r.messages.push_back({r_name, std::move(text)});
  }
  ParseCommon(body, vocab_size, r.gen, &r.stream, &r.include_usage, &r.model);
  r.tools = ParseTools(body);
  if (r.tools.active()) {
    if (r.gen.grammar)
      BadParam("tools",
               "'tools' cannot be combined with 'response_format', 'grammar' or 'json_schema'");
    AddToolPrompt(r.tools, r.messages);
    r.gen.grammar = CheckedGrammar(ToolCallGbnf(r.tools), "tools", "tool call grammar");
  }
  const char* max_key =
      Field(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  r.gen.max_tokens =
      static_cast<int>(GetInteger(body, max_key, -1, 0, INT_MAX, /*clamp_high=*/true));
  if (GetBool(body, "logprobs", false)) {
    r.gen.logprobs = static_cast<int>(GetInteger(body, "top_logprobs", 0, 0, kMaxTopLogprobs));
  } else if (Field(body, "top_logprobs")) {
    BadParam("top_logprobs", "'top_logprobs' requires 'logprobs': true");
  }
  return r;
}

TokenizeRequest ParseTokenizeRequest(const json& body) {
  TokenizeRequest r;
  const json* c = Field(body, "content");
  if (!c || !c->is_string()) BadParam("content", "'content' must be a string");
  r.content = c->get<std::string>();
  r.add_special = GetBool(body, "add_special", false);
  r.with_pieces = GetBool(body, "with_pieces", false);
  return r;
}

std::vector<int> ParseDetokenizeRequest(const json& body, int vocab_size) {
  const json* t = Field(body, "tokens");
  if (!t || !t->is_array()) BadParam("tokens", "'tokens' must be an array of token ids");
  return ParseIdArray(*t, vocab_size, "tokens");
}

}  // namespace elm::server
