#include "grammar/json_schema.h"

#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/error.h"

namespace elm {

// Ordered: properties are written in the order the schema lists them.
using SchemaJson = nlohmann::ordered_json;  // a distinct name: unity builds share scopes

namespace {

// The pieces of any JSON text, written once into every grammar that needs them.
const std::map<std::string, std::string>& JsonPrimitiveRules() {
  static const std::map<std::string, std::string> rules = {
      {"ws", "| \" \" | \"\\n\" [ \\t]{0,20}"},
      {"char", "[^\"\\\\\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4})"},
      {"string", "\"\\\"\" char* \"\\\"\""},
      {"integer", "\"-\"? (\"0\" | [1-9] [0-9]{0,15})"},
      {"number",
       "\"-\"? (\"0\" | [1-9] [0-9]{0,15}) (\".\" [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})?"},
      {"boolean", "\"true\" | \"false\""},
      {"null", "\"null\""},
      {"value", "object | array | string | number | boolean | null"},
      {"object",
       "\"{\" ws ( string ws \":\" ws value ws ( \",\" ws string ws \":\" ws value ws )* )? \"}\""},
      {"array", "\"[\" ws ( value ws ( \",\" ws value ws )* )? \"]\""},
  };
  return rules;
}

// Which primitive rules a primitive rule uses.
const std::map<std::string, std::vector<std::string>>& JsonPrimitiveDeps() {
  static const std::map<std::string, std::vector<std::string>> deps = {
      {"string", {"char"}},
      {"value", {"object", "array", "string", "number", "boolean", "null"}},
      {"object", {"ws", "string", "value"}},
      {"array", {"ws", "value"}},
  };
  return deps;
}

constexpr int kMaxSchemaDepth = 64;

class SchemaTranslator {
 public:
  explicit SchemaTranslator(const SchemaJson& root) : root_(root) {}

  std::string Translate() {
    const std::string top = Visit(root_, "#", "root", 0);
    std::string out = "root ::= " + top + "\n";
    for (const auto& [name, body] : rules_) out += name + " ::= " + body + "\n";
    for (const auto& name : primitives_)
      out += name + " ::= " + JsonPrimitiveRules().at(name) + "\n";
    return out;
  }

  void Use(const std::string& primitive) {
    if (!primitives_.insert(primitive).second) return;
    const auto it = JsonPrimitiveDeps().find(primitive);
    if (it != JsonPrimitiveDeps().end())
      for (const auto& d : it->second) Use(d);
  }

 private:
  [[noreturn]] static void Unsupported(const std::string& path, const std::string& what) {
    Fail("JSON schema at ", path, ": ", what);
  }

  std::string NewRule(const std::string& hint, const std::string& body) {
    std::string name;
    for (char c : hint) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
      name += ok ? c : '-';
    }
    if (name.size() > 60) name.resize(60);
    if (name.empty()) name = "r";
    std::string unique = "s-" + name;
    for (int k = 2; taken_.count(unique); ++k) unique = "s-" + name + "-" + std::to_string(k);
    taken_.insert(unique);
    rules_.emplace_back(unique, body);
    return unique;
  }

  static std::string Literal(const SchemaJson& v) { return GbnfLiteral(v.dump()); }

  std::string Visit(const SchemaJson& s, const std::string& path, const std::string& hint,
                    int depth) {
    if (depth > kMaxSchemaDepth)
      Unsupported(path, "nested more than " + std::to_string(kMaxSchemaDepth) + " levels deep");
    if (s.is_boolean()) {
      if (!s.get<bool>()) Unsupported(path, "the schema false allows no value");
      Use("value");
      return "value";
    }
    if (!s.is_object()) Unsupported(path, "a schema must be an object or a boolean");
    static const std::set<std::string> kIgnored = {
        "title",    "description", "default",   "examples",   "$schema", "$id",
        "$comment", "readOnly",    "writeOnly", "deprecated", "$defs",   "definitions"};
    static const std::set<std::string> kKnown = {
        "type",      "properties", "required", "additionalProperties",
        "items",     "minItems",   "maxItems", "minLength",
        "maxLength", "enum",       "const",    "anyOf",
        "oneOf",     "$ref"};
    for (const auto& [key, v] : s.items()) {
      (void)v;
      if (!kIgnored.count(key) && !kKnown.count(key))
        Unsupported(path, "the keyword '" + key +
                              "' is not supported (supported: type, properties, required, "
                              "additionalProperties, items, minItems, maxItems, minLength, "
                              "maxLength, enum, const, anyOf, oneOf, $ref)");
    }
    if (s.contains("$ref")) return Ref(s, path, depth);
    if (s.contains("const")) return Literal(s["const"]);
    if (s.contains("enum")) {
      const SchemaJson& e = s["enum"];
      if (!e.is_array() || e.empty())
        Unsupported(path + "/enum", "'enum' must be a non-empty array");
      std::string body;
      for (const auto& v : e) body += (body.empty() ? "" : " | ") + Literal(v);
      return NewRule(hint, body);
    }
    for (const char* alt : {"anyOf", "oneOf"})
      if (s.contains(alt)) {
        const SchemaJson& list = s[alt];
        if (!list.is_array() || list.empty())
          Unsupported(path + "/" + alt, std::string("'") + alt + "' must be a non-empty array");
        std::string body;
        for (size_t i = 0; i < list.size(); ++i)
          body += (i ? " | " : "") + Visit(list[i], path + "/" + alt + "/" + std::to_string(i),
                                           hint + "-" + std::to_string(i), depth + 1);
        return NewRule(hint, body);
      }
    if (!s.contains("type")) {
      // Untyped: infer from the keywords present, else any value.
      if (s.contains("properties") || s.contains("additionalProperties"))
        return Typed(s, "object", path, hint, depth);
      if (s.contains("items")) return Typed(s, "array", path, hint, depth);
      Use("value");
      return "value";
    }
    const SchemaJson& t = s["type"];
    if (t.is_string()) return Typed(s, t.get<std::string>(), path, hint, depth);
    if (!t.is_array() || t.empty())
      Unsupported(path + "/type", "'type' must be a string or a non-empty array of strings");
    std::string body;
    for (const auto& one : t) {
      if (!one.is_string()) Unsupported(path + "/type", "'type' entries must be strings");
      body += (body.empty() ? "" : " | ") +
              Typed(s, one.get<std::string>(), path, hint + "-" + one.get<std::string>(), depth);
    }
    return NewRule(hint, body);
  }

  std::string Ref(const SchemaJson& s, const std::string& path, int depth) {
    const SchemaJson& r = s["$ref"];
    if (!r.is_string()) Unsupported(path + "/$ref", "'$ref' must be a string");
    const std::string ref = r.get<std::string>();
    const auto memo = refs_.find(ref);
    if (memo != refs_.end()) return memo->second;
    std::string name;
    for (const char* prefix : {"#/$defs/", "#/definitions/"})
      if (ref.starts_with(prefix)) name = ref.substr(std::string(prefix).size());
    const char* where = ref.starts_with("#/$defs/") ? "$defs" : "definitions";
    if (name.empty() || !root_.is_object() || !root_.contains(where) || !root_[where].is_object() ||
        !root_[where].contains(name))
      Unsupported(path + "/$ref", "'$ref' \"" + ref +
                                      "\" is not found (only local #/$defs/NAME and "
                                      "#/definitions/NAME are supported)");
    // Named before it is visited, so a recursive reference finds the rule.
    const std::string rule = NewRule("ref-" + name, "");
    refs_[ref] = rule;
    const std::string body = Visit(root_[where][name], ref, "ref-" + name, depth + 1);
    for (auto& [n, b] : rules_)
      if (n == rule) b = body;
    return rule;
  }

  static int Count(const SchemaJson& s, const char* key, const std::string& path, int fallback) {
    if (!s.contains(key)) return fallback;
    const SchemaJson& v = s[key];
    if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0))
      Unsupported(path + "/" + key, std::string("'") + key + "' must be a non-negative integer");
    return static_cast<int>(std::min<uint64_t>(v.get<uint64_t>(), kMaxGrammarRepeat));
  }

  std::string Typed(const SchemaJson& s, const std::string& type, const std::string& path,
                    const std::string& hint, int depth) {
    if (type == "object") return Object(s, path, hint, depth);
    if (type == "array") return Array(s, path, hint, depth);
    if (type == "string") {
      const int lo = Count(s, "minLength", path, 0), hi = Count(s, "maxLength", path, -1);
      if (lo == 0 && hi < 0) {
        Use("string");
        return "string";
      }
      if (hi >= 0 && hi < lo) Unsupported(path, "'maxLength' is below 'minLength'");
      Use("char");
      return NewRule(hint, "\"\\\"\" char{" + std::to_string(lo) + "," +
                               (hi < 0 ? std::string() : std::to_string(hi)) + "} \"\\\"\"");
    }
    if (type == "number" || type == "integer" || type == "boolean" || type == "null") {
      Use(type);
      return type;
    }
    Unsupported(path + "/type", "unknown type '" + type +
                                    "' (expected object, array, string, number, integer, "
                                    "boolean or null)");
  }

  std::string Object(const SchemaJson& s, const std::string& path, const std::string& hint,
                     int depth) {
    Use("ws");
    const SchemaJson* props = s.contains("properties") ? &s["properties"] : nullptr;
    if (props && !props->is_object())
      Unsupported(path + "/properties", "'properties' must be an object");
    const SchemaJson* extra =
        s.contains("additionalProperties") ? &s["additionalProperties"] : nullptr;
    if (extra && !extra->is_boolean() && !extra->is_object())
      Unsupported(path + "/additionalProperties",
                  "'additionalProperties' must be a boolean or a schema");
    std::set<std::string> required;
    if (s.contains("required")) {
      const SchemaJson& r = s["required"];
      if (!r.is_array()) Unsupported(path + "/required", "'required' must be an array of names");
      for (const auto& name : r) {
        if (!name.is_string())
          Unsupported(path + "/required", "'required' entries must be strings");
        if (!props || !props->contains(name.get<std::string>()))
          Unsupported(path + "/required", "required property '" + name.get<std::string>() +
                                              "' is not listed in 'properties'");
        required.insert(name.get<std::string>());
      }
    }
    if (!props || props->empty()) {
      // A map: any keys, values of the additionalProperties schema (any value without one).
      if (extra && extra->is_boolean() && !extra->get<bool>())
        return NewRule(hint, "\"{\" ws \"}\"");
      std::string v = "value";
      if (extra && extra->is_object())
        v = Visit(*extra, path + "/additionalProperties", hint + "-value", depth + 1);
      else
        Use("value");
      Use("string");
      const std::string kv = "string ws \":\" ws " + v + " ws";
      return NewRule(hint, "\"{\" ws ( " + kv + " ( \",\" ws " + kv + " )* )? \"}\"");
    }
    if (extra && extra->is_object())
      Unsupported(path + "/additionalProperties",
                  "a schema for additionalProperties next to 'properties' is not supported "
                  "(use false, or leave it out: only the listed properties are written)");
    // Properties in their listed order, each optional one present or not. seq(i, first) is the
    // rest from property i, `first` when nothing was written yet (no comma before the next).
    std::vector<std::string> keys, values;
    for (const auto& [key, sub] : props->items()) {
      keys.push_back(key);
      values.push_back(Visit(sub, path + "/properties/" + key, hint + "-" + key, depth + 1));
    }
    const size_t n = keys.size();
    std::vector<std::string> seq_first(n + 1), seq_rest(n + 1);
    for (size_t i = n + 1; i-- > 0;) {
      if (i == n) {
        seq_first[i] = seq_rest[i] = "";
        continue;
      }
      const std::string kv = Literal(SchemaJson(keys[i])) + " ws \":\" ws " + values[i] + " ws";
      for (bool first : {true, false}) {
        const std::string sep = first ? "" : "\",\" ws ";
        std::string body = sep + kv + " " + seq_rest[i + 1];
        if (!required.count(keys[i])) {
          const std::string skip = first ? seq_first[i + 1] : seq_rest[i + 1];
          body = "( " + body + " ) | ( " + skip + " )";
        }
        (first ? seq_first[i] : seq_rest[i]) =
            NewRule(hint + "-" + std::to_string(i) + (first ? "-f" : "-r"), body);
      }
    }
    return NewRule(hint, "\"{\" ws " + seq_first[0] + " \"}\"");
  }

  std::string Array(const SchemaJson& s, const std::string& path, const std::string& hint,
                    int depth) {
    Use("ws");
    if (s.contains("prefixItems"))
      Unsupported(path + "/prefixItems", "'prefixItems' is not supported");
    std::string item = "value";
    if (s.contains("items")) {
      if (s["items"].is_array())
        Unsupported(path + "/items", "an array of item schemas (tuple form) is not supported");
      item = Visit(s["items"], path + "/items", hint + "-item", depth + 1);
    } else {
      Use("value");
    }
    const int lo = Count(s, "minItems", path, 0), hi = Count(s, "maxItems", path, -1);
    if (hi >= 0 && hi < lo) Unsupported(path, "'maxItems' is below 'minItems'");
    if (hi == 0) return NewRule(hint, "\"[\" ws \"]\"");
    const std::string more = "( \",\" ws " + item + " ws )";
    const std::string rest_lo = std::to_string(lo > 0 ? lo - 1 : 0);
    const std::string rest_hi = hi < 0 ? std::string() : std::to_string(hi - 1);
    std::string items = item + " ws " + more + "{" + rest_lo + "," + rest_hi + "}";
    if (lo == 0) items = "( " + items + " )?";
    return NewRule(hint, "\"[\" ws " + items + " \"]\"");
  }

  const SchemaJson& root_;
  std::vector<std::pair<std::string, std::string>> rules_;
  std::set<std::string> taken_;
  std::set<std::string> primitives_;
  std::map<std::string, std::string> refs_;
};

}  // namespace

std::string JsonSchemaToGbnf(const SchemaJson& schema) {
  return SchemaTranslator(schema).Translate();
}

std::string JsonSchemaToGbnf(const nlohmann::json& schema) {
  return JsonSchemaToGbnf(SchemaJson::parse(schema.dump()));
}

std::string JsonObjectGbnf() {
  std::string out = "root ::= object\n";
  for (const char* name :
       {"ws", "char", "string", "integer", "number", "boolean", "null", "value", "object", "array"})
    out += std::string(name) + " ::= " + JsonPrimitiveRules().at(name) + "\n";
  return out;
}

Grammar JsonSchemaGrammar(const SchemaJson& schema) {
  return ParseGbnf(JsonSchemaToGbnf(schema), "JSON schema grammar");
}

Grammar JsonSchemaGrammar(const nlohmann::json& schema) {
  return ParseGbnf(JsonSchemaToGbnf(schema), "JSON schema grammar");
}

}  // namespace elm
