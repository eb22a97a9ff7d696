// Tests for src/grammar: the GBNF parser (syntax, errors), the matcher on whole strings, JSON
// Schema translation (accepted and refused schemas), and the token mask over the Llama-2
// vocabulary (which tokens are allowed, UTF-8 split over byte tokens, the stripped leading
// space, EOS only at the end).
#include "grammar/grammar.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "generation/generator.h"
#include "grammar/grammar_constraint.h"
#include "grammar/grammar_matcher.h"
#include "grammar/json_schema.h"
#include "model/model.h"
#include "model/session.h"
#include "sampling/sampler.h"
#include "tokenizer/tokenizer.h"

namespace elm {
namespace grammar_test {

using nlohmann::json;

bool Accepts(const std::string& gbnf, const std::string& text) {
  const Grammar g = ParseGbnf(gbnf);
  return GrammarMatcher(g).Accepts(text);
}

std::string ErrorOf(const std::string& gbnf) {
  try {
    (void)ParseGbnf(gbnf, "test.gbnf");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(GrammarGbnf, LiteralsClassesAndRepetitions) {
  const std::string g = R"(
    # a comment
    root ::= "ab" [0-9]+ ("x" | "yz")? tail
    tail ::= [^a-c]{2,3}
  )";
  EXPECT_TRUE(Accepts(g, "ab1xdd"));
  EXPECT_TRUE(Accepts(g, "ab123yzddd"));
  EXPECT_TRUE(Accepts(g, "ab9zz"));
  EXPECT_FALSE(Accepts(g, "ab"));
  EXPECT_FALSE(Accepts(g, "abxdd"));     // [0-9]+ needs one digit
  EXPECT_FALSE(Accepts(g, "ab1xda"));    // 'a' is excluded
  EXPECT_FALSE(Accepts(g, "ab1xdddd"));  // at most 3
}

TEST(GrammarGbnf, EscapesUnicodeAndAnyChar) {
  EXPECT_TRUE(Accepts(R"(root ::= "\x41\u00e9\n\"\\" [\]\-])", "A\xC3\xA9\n\"\\]"));
  EXPECT_TRUE(Accepts(R"(root ::= "é" [α-ω] .)", "\xC3\xA9\xCE\xB2z"));
  EXPECT_FALSE(Accepts(R"(root ::= [α-ω])", "a"));
  EXPECT_TRUE(Accepts("root ::= x{3}\nx ::= \"ab\"", "ababab"));
  EXPECT_FALSE(Accepts("root ::= x{3}\nx ::= \"ab\"", "abab"));
  EXPECT_TRUE(Accepts("root ::= \"a\"{2,}", "aaaaa"));
  EXPECT_TRUE(Accepts("root ::= | \"a\"", ""));
  // A rule may continue on the next lines; the next rule starts at `name ::=`.
  EXPECT_TRUE(Accepts("root ::= \"a\"\n   \"b\"\n | \"c\"\nother ::= \"d\"", "ab"));
}

TEST(GrammarGbnf, ErrorsNameLineAndProblem) {
  EXPECT_NE(ErrorOf("root ::= foo").find("test.gbnf:1:10: rule 'foo' is used but not defined"),
            std::string::npos)
      << ErrorOf("root ::= foo");
  EXPECT_NE(ErrorOf("a ::= \"x\"").find("no 'root' rule"), std::string::npos);
  EXPECT_NE(
      ErrorOf("root ::= \"x\"\nroot ::= \"y\"").find("test.gbnf:2:1: rule 'root' is defined twice"),
      std::string::npos);
  EXPECT_NE(ErrorOf("root ::= \"abc").find("unterminated"), std::string::npos);
  EXPECT_NE(ErrorOf("root ::= [abc").find("unclosed '['"), std::string::npos);
  EXPECT_NE(ErrorOf("root ::= (\"a\"").find("unclosed '('"), std::string::npos);
  EXPECT_NE(ErrorOf("root ::= \"a\"{5,2}").find("n < m"), std::string::npos);
  EXPECT_NE(ErrorOf("root ::= \"a\"{99999}").find("repetition count above"), std::string::npos);
  EXPECT_NE(ErrorOf("root ::= root \"a\"").find("left-recursive"), std::string::npos);
  EXPECT_NE(ErrorOf("root ::= (\"a\"?)*").find("left-recursive"), std::string::npos);
  EXPECT_NE(ErrorOf("root ::= \"\\q\"").find("unknown escape"), std::string::npos);
  EXPECT_NE(ErrorOf("").find("empty"), std::string::npos);
  EXPECT_NE(ErrorOf("root ::= \"a\"{1000}{1000}{1000}").find("too large"), std::string::npos);
  EXPECT_NE(ErrorOf("root ::= @").find("unexpected '@'"), std::string::npos);
}

TEST(GrammarGbnf, LiteralRoundTrip) {
  const std::string s = "a\"b\\c\n\x01\xC3\xA9";
  EXPECT_TRUE(Accepts("root ::= " + GbnfLiteral(s), s));
}

// ---- JSON Schema ----------------------------------------------------------------------------

using ojson = nlohmann::ordered_json;

template <typename J>
bool SchemaAccepts(const J& schema, const std::string& text) {
  const Grammar g = JsonSchemaGrammar(schema);
  return GrammarMatcher(g).Accepts(text);
}

std::string SchemaError(const json& schema) {
  try {
    (void)JsonSchemaGrammar(schema);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const ojson kPerson = ojson::parse(R"({
  "type": "object",
  "title": "Person",
  "properties": {
    "name": {"type": "string", "description": "full name"},
    "age": {"type": "integer"},
    "height": {"type": "number"},
    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    "role": {"enum": ["admin", "user", 3, null]},
    "address": {"type": "object", "properties": {"city": {"type": "string"}},
                "required": ["city"], "additionalProperties": false},
    "nick": {"type": ["string", "null"]}
  },
  "required": ["name", "age"],
  "additionalProperties": false
})");

TEST(GrammarJsonSchema, ObjectsFollowPropertiesAndRequired) {
  EXPECT_TRUE(SchemaAccepts(kPerson, R"({"name": "Ann", "age": 31})"));
  EXPECT_TRUE(SchemaAccepts(kPerson, R"({"name":"A\"n\u00e9","age":-3,"height":1.5e3,)"
                                     R"("tags":["a","b"],"role":"user","address":{"city":"X"},)"
                                     R"("nick":null})"));
  EXPECT_TRUE(SchemaAccepts(kPerson, "{\n  \"name\": \"Ann\",\n  \"age\": 0,\n  \"role\": 3\n}"));
  EXPECT_FALSE(SchemaAccepts(kPerson, R"({"age": 31, "name": "Ann"})"));  // listed order
  EXPECT_FALSE(SchemaAccepts(kPerson, R"({"name": "Ann"})"));             // age required
  EXPECT_FALSE(SchemaAccepts(kPerson, R"({"name": "Ann", "age": 1.5})"));
  EXPECT_FALSE(SchemaAccepts(kPerson, R"({"name": "Ann", "age": 01})"));
  EXPECT_FALSE(SchemaAccepts(kPerson, R"({"name": "Ann", "age": 1, "x": 1})"));
  EXPECT_FALSE(SchemaAccepts(kPerson, R"({"name": "Ann", "age": 1, "tags": ["a","b","c","d"]})"));
  EXPECT_FALSE(SchemaAccepts(kPerson, R"({"name": "Ann", "age": 1, "role": "root"})"));
  EXPECT_FALSE(SchemaAccepts(kPerson, R"({"name": "Ann", "age": 1, "address": {}})"));
  EXPECT_FALSE(SchemaAccepts(kPerson, "{\"name\": \"a\nb\", \"age\": 1}"));  // raw control char
}

TEST(GrammarJsonSchema, RefsAnyOfConstMapsAndLengths) {
  const ojson tree = ojson::parse(R"({
    "$defs": {"node": {"type": "object", "properties": {
      "v": {"const": "x"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
      "required": ["v"]}},
    "$ref": "#/$defs/node"})");
  EXPECT_TRUE(SchemaAccepts(tree, R"({"v":"x","kids":[{"v":"x"},{"v":"x","kids":[]}]})"));
  EXPECT_FALSE(SchemaAccepts(tree, R"({"v":"y"})"));
  const json any = json::parse(R"({"anyOf": [{"type": "integer"}, {"type": "boolean"}]})");
  EXPECT_TRUE(SchemaAccepts(any, "12"));
  EXPECT_TRUE(SchemaAccepts(any, "false"));
  EXPECT_FALSE(SchemaAccepts(any, "\"s\""));
  const json map =
      json::parse(R"({"type": "object", "additionalProperties": {"type": "integer"}})");
  EXPECT_TRUE(SchemaAccepts(map, R"({"a": 1, "b": 2})"));
  EXPECT_FALSE(SchemaAccepts(map, R"({"a": "1"})"));
  const json str = json::parse(R"({"type": "string", "minLength": 2, "maxLength": 3})");
  EXPECT_TRUE(SchemaAccepts(str, "\"ab\""));
  EXPECT_FALSE(SchemaAccepts(str, "\"a\""));
  EXPECT_FALSE(SchemaAccepts(str, "\"abcd\""));
  EXPECT_TRUE(SchemaAccepts(json::object(), R"([1, {"a": null}, "x", true])"));
  EXPECT_TRUE(SchemaAccepts(json(true), "3"));
  const json arr = json::parse(R"({"type": "array", "minItems": 2})");
  EXPECT_FALSE(SchemaAccepts(arr, "[1]"));
  EXPECT_TRUE(SchemaAccepts(arr, "[1, 2, 3]"));
  EXPECT_TRUE(GrammarMatcher(ParseGbnf(JsonObjectGbnf())).Accepts(R"({"a": [1, 2.5, "x"]})"));
  EXPECT_FALSE(GrammarMatcher(ParseGbnf(JsonObjectGbnf())).Accepts(R"([1])"));
}

TEST(GrammarJsonSchema, UnsupportedKeywordsAreRefusedByName) {
  EXPECT_NE(SchemaError(json::parse(R"({"type": "string", "pattern": "^a"})"))
                .find("JSON schema at #: the keyword 'pattern' is not supported"),
            std::string::npos);
  EXPECT_NE(
      SchemaError(
          json::parse(
              R"({"type": "object", "properties": {"a": {"type": "integer", "minimum": 0}}})"))
          .find("#/properties/a: the keyword 'minimum'"),
      std::string::npos);
  EXPECT_NE(SchemaError(json::parse(R"({"type": "thing"})")).find("unknown type 'thing'"),
            std::string::npos);
  EXPECT_NE(SchemaError(json::parse(R"({"$ref": "http://x/y"})")).find("is not found"),
            std::string::npos);
  EXPECT_NE(SchemaError(json::parse(R"({"type": "object", "required": ["a"]})"))
                .find("required property 'a' is not listed"),
            std::string::npos);
  EXPECT_NE(SchemaError(json(false)).find("allows no value"), std::string::npos);
  EXPECT_NE(SchemaError(json(3)).find("must be an object"), std::string::npos);
}

// ---- The token mask -------------------------------------------------------------------------

const Tokenizer& Tok() {
  static const Tokenizer tok = Tokenizer::Default();
  return tok;
}

std::shared_ptr<const TokenTrie> Vocab() {
  static const auto v = TokenTrie::FromTokenizer(Tok());
  return v;
}

GrammarConstraint ConstraintOf(const std::string& gbnf) {
  return GrammarConstraint(std::make_shared<const Grammar>(ParseGbnf(gbnf)), Vocab());
}

int Id(const std::string& piece) {
  const auto id = Tok().TokenId(piece);
  EXPECT_TRUE(id.has_value()) << piece;
  return id.value_or(0);
}

bool Has(const std::vector<int>& v, int id) {
  return std::find(v.begin(), v.end(), id) != v.end();
}

// A continuation (the server's replies keep a leading space, TextOutput::continuation): the space
// is text the grammar must take, so " yes" no longer fits "yes" | "no".
TEST(GrammarMask, ContinuationKeepsTheLeadingSpace) {
  GrammarConstraint c(std::make_shared<const Grammar>(ParseGbnf(R"(root ::= "yes" | "no")")),
                      Vocab(),
                      /*continuation=*/true);
  const auto allowed = c.AllowedTokens();
  EXPECT_TRUE(Has(allowed, Id("yes")));
  EXPECT_FALSE(Has(allowed, Id("\xE2\x96\x81yes")));
  for (int id : allowed) EXPECT_NE(Vocab()->TokenBytes(id)[0], ' ') << "token " << id;
  GrammarConstraint spaced(std::make_shared<const Grammar>(ParseGbnf(R"(root ::= " yes")")),
                           Vocab(),
                           /*continuation=*/true);
  EXPECT_TRUE(Has(spaced.AllowedTokens(), Id("\xE2\x96\x81yes")));
}

TEST(GrammarMask, AllowsExactlyTheTokensThatFit) {
  GrammarConstraint c = ConstraintOf(R"(root ::= "yes" | "no")");
  const auto allowed = c.AllowedTokens();
  // Every allowed token's text is a prefix of "yes" or "no" (after the stripped leading space);
  // the whole words and their first letters are among them.
  for (int id : allowed) {
    std::string t = Vocab()->TokenBytes(id);
    if (!t.empty() && t[0] == ' ') t.erase(0, 1);
    EXPECT_TRUE(std::string("yes").starts_with(t) || std::string("no").starts_with(t))
        << "token " << id << " '" << t << "'";
  }
  EXPECT_TRUE(Has(allowed, Id("yes")));
  EXPECT_TRUE(Has(allowed, Id("\xE2\x96\x81yes")));  // " yes": the decoder strips the space
  EXPECT_TRUE(Has(allowed, Id("no")));
  EXPECT_TRUE(Has(allowed, Id("y")));
  EXPECT_FALSE(Has(allowed, Id("\xE2\x96\x81yet")));
  EXPECT_FALSE(Has(allowed, Tok().eos_id()));
  EXPECT_FALSE(c.Complete());
  c.Accept(Id("y"));
  const auto after = c.AllowedTokens();
  EXPECT_TRUE(Has(after, Id("es")));
  EXPECT_FALSE(Has(after, Id("\xE2\x96\x81"
                             "es")));  // only the first token loses its space
  EXPECT_FALSE(Has(after, Id("no")));
  c.Accept(Id("es"));
  EXPECT_TRUE(c.Complete());
  EXPECT_EQ(c.AllowedTokens(), std::vector<int>{Tok().eos_id()});
  EXPECT_EQ(c.text(), "yes");
  EXPECT_THROW(c.Accept(Id("a")), Error);
}

TEST(GrammarMask, MaskSetsDisallowedLogitsToMinusInfinity) {
  GrammarConstraint c = ConstraintOf(R"(root ::= [0-9]+)");
  std::vector<float> logits(static_cast<size_t>(Tok().vocab_size()), 1.0f);
  c.Mask(logits);
  const auto allowed = c.AllowedTokens();
  size_t finite = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    const bool ok = std::isfinite(logits[i]);
    finite += ok;
    EXPECT_EQ(ok, Has(allowed, static_cast<int>(i))) << i;
  }
  EXPECT_EQ(finite, allowed.size());
  EXPECT_TRUE(Has(allowed, Id("1")));
  c.Accept(Id("1"));
  std::fill(logits.begin(), logits.end(), 1.0f);
  c.Mask(logits);
  EXPECT_TRUE(std::isfinite(logits[static_cast<size_t>(Tok().eos_id())]));  // may end now
  EXPECT_TRUE(std::isfinite(logits[static_cast<size_t>(Id("2"))]));
  EXPECT_FALSE(c.Complete());
}

TEST(GrammarMask, MultiByteCharactersOverByteTokens) {
  // "é" is C3 A9: the byte token <0xC3> is allowed (a continuation can follow), <0xC4> is not.
  GrammarConstraint c = ConstraintOf(R"(root ::= "é")");
  const auto allowed = c.AllowedTokens();
  EXPECT_TRUE(Has(allowed, Id("<0xC3>")));
  EXPECT_FALSE(Has(allowed, Id("<0xC4>")));
  c.Accept(Id("<0xC3>"));
  const auto next = c.AllowedTokens();
  EXPECT_TRUE(Has(next, Id("<0xA9>")));
  EXPECT_FALSE(Has(next, Id("<0xA8>")));
  c.Accept(Id("<0xA9>"));
  EXPECT_TRUE(c.Complete());
}

TEST(GrammarMask, JsonStringStateIsMostOfTheVocabulary) {
  GrammarConstraint c(
      std::make_shared<const Grammar>(JsonSchemaGrammar(json::parse(
          R"({"type":"object","properties":{"a":{"type":"string"}},"required":["a"]})"))),
      Vocab());
  for (const char* piece : {"{\"", "a", "\":", "\xE2\x96\x81\""}) c.Accept(Id(piece));
  const auto allowed = c.AllowedTokens();
  EXPECT_GT(allowed.size(), 25000u);
  EXPECT_FALSE(Has(allowed, Id("<0x0A>")));  // a raw newline cannot be in a JSON string
  EXPECT_TRUE(Has(allowed, Id("\xE2\x96\x81the")));
  EXPECT_EQ(c.text(), "{\"a\": \"");
}

// ---- In the decode loop: every reply under a schema is JSON that follows it -----------------

std::shared_ptr<const Model> TinyModel() {
  static const auto model = Model::Load(std::string(ELM_SOURCE_DIR) + "/models/tiny-random-32k");
  return model;
}

// The subset of JSON Schema kPerson uses.
void ExpectValid(const json& v, const ojson& schema, const std::string& path) {
  if (schema.contains("enum")) {
    bool found = false;
    for (const auto& e : schema["enum"]) found = found || json::parse(e.dump()) == v;
    EXPECT_TRUE(found) << path << ": " << v.dump();
    return;
  }
  if (schema.contains("type") && schema["type"].is_array()) {
    EXPECT_TRUE(v.is_string() || v.is_null()) << path;
    return;
  }
  const std::string type = schema["type"].get<std::string>();
  if (type == "object") {
    ASSERT_TRUE(v.is_object()) << path << ": " << v.dump();
    for (const auto& r : schema.value("required", ojson::array()))
      EXPECT_TRUE(v.contains(r.get<std::string>())) << path << " lacks " << r;
    for (const auto& [k, sub] : v.items()) {
      ASSERT_TRUE(schema["properties"].contains(k)) << path << ": unexpected " << k;
      ExpectValid(sub, schema["properties"][k], path + "." + k);
    }
  } else if (type == "array") {
    ASSERT_TRUE(v.is_array()) << path;
    if (schema.contains("maxItems")) {
      EXPECT_LE(v.size(), schema["maxItems"].get<size_t>()) << path;
    }
    for (size_t i = 0; i < v.size(); ++i)
      ExpectValid(v[i], schema["items"], path + "[" + std::to_string(i) + "]");
  } else if (type == "string") {
    EXPECT_TRUE(v.is_string()) << path;
  } else if (type == "integer") {
    EXPECT_TRUE(v.is_number_integer()) << path << ": " << v.dump();
  } else if (type == "number") {
    EXPECT_TRUE(v.is_number()) << path;
  }
}

TEST(GrammarGenerate, EveryReplyUnderASchemaParsesAndValidates) {
  // The tiny model's weights are random: without the grammar its text is noise, so a valid reply
  // is the constraint's doing. Strings are bounded so that a reply ends within the budget.
  ojson schema = kPerson;
  schema["properties"]["name"]["maxLength"] = 10;
  schema["properties"]["address"]["properties"]["city"]["maxLength"] = 10;
  schema["properties"]["nick"]["maxLength"] = 10;
  schema["properties"]["tags"]["items"]["maxLength"] = 5;
  for (auto& [k, v] : schema["properties"].items())
    if (v.value("type", ojson()) == "string") v["maxLength"] = 10;
  const auto grammar = std::make_shared<const Grammar>(JsonSchemaGrammar(schema));
  const auto prompt = Tok().Encode("Describe a person:", true);
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    GrammarConstraint c(grammar, Vocab());
    GenerateOptions go;
    go.max_new_tokens = 800;
    go.sampling.temperature = seed % 3 == 0 ? 0.0f : 1.5f;  // greedy and very random
    go.sampling.top_k = 0;
    go.sampling.top_p = 1.0f;
    go.sampling.min_p = 0.0f;
    go.sampling.seed = seed;
    go.constraint = &c;
    Session session(TinyModel(), 2048);
    Sampler sampler(go.sampling);
    const GenerateResult r = Generate(session, prompt, go, sampler, TextOutput{&Tok(), {}});
    ASSERT_TRUE(r.reason == StopReason::kGrammar || r.reason == StopReason::kEos)
        << StopReasonName(r.reason) << ": " << r.text;
    EXPECT_EQ(r.text, c.text());
    json parsed;
    ASSERT_NO_THROW(parsed = json::parse(r.text)) << r.text;
    ExpectValid(parsed, schema, "$");
  }
}

TEST(GrammarGenerate, GbnfReplyEndsWhenTheGrammarIsComplete) {
  auto grammar = std::make_shared<const Grammar>(ParseGbnf(R"(root ::= "<" [a-z]{3} ">")"));
  GrammarConstraint c(grammar, Vocab());
  GenerateOptions go;
  go.max_new_tokens = 50;
  go.stop_at_eos = false;  // a grammar still ends the reply
  go.sampling.seed = 3;
  go.constraint = &c;
  Session session(TinyModel());
  Sampler sampler(go.sampling);
  const GenerateResult r =
      Generate(session, Tok().Encode("x", true), go, sampler, TextOutput{&Tok(), {}});
  EXPECT_EQ(r.reason, StopReason::kGrammar);
  ASSERT_EQ(r.text.size(), 5u) << r.text;
  EXPECT_EQ(r.text.front(), '<');
  EXPECT_EQ(r.text.back(), '>');
  EXPECT_STREQ(StopReasonName(r.reason), "grammar");
}

}  // namespace grammar_test
}  // namespace elm
