// JSON Schema to GBNF (grammar.h), for constrained JSON output (docs/sampling.md, "Grammars and
// JSON schemas"). Covers what OpenAI-style clients send: type (one or a list), object properties
// in their listed order with required, additionalProperties (false, true or absent: only the
// listed properties are written; a schema with no properties: a map of that schema), array items
// with minItems/maxItems, string minLength/maxLength, number, integer, boolean, null, enum,
// const, anyOf/oneOf (as alternatives), local $ref into $defs/definitions (recursion allowed),
// and the annotations (title, description, default, examples, $schema, $id, $comment...), which
// are ignored. Everything else (pattern, format, minimum/maximum, multipleOf, allOf, not,
// if/then/else, prefixItems, patternProperties, ...) is refused with an elm::Error naming the
// keyword and where it is, so a client never gets output that silently ignores part of its schema.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "grammar/grammar.h"

namespace elm {

// The GBNF of `schema`; its root rule is `root`. Output is compact JSON with at most a little
// whitespace between tokens (a newline and up to 20 spaces or tabs). Object properties are
// written in the order the schema lists them: an ordered_json keeps that order, a plain json
// (nlohmann's std::map) has its keys sorted, so its properties come in alphabetical order.
std::string JsonSchemaToGbnf(const nlohmann::ordered_json& schema);
std::string JsonSchemaToGbnf(const nlohmann::json& schema);

// Any JSON object (OpenAI's response_format {"type": "json_object"}).
std::string JsonObjectGbnf();

// ParseGbnf(JsonSchemaToGbnf(schema)).
Grammar JsonSchemaGrammar(const nlohmann::ordered_json& schema);
Grammar JsonSchemaGrammar(const nlohmann::json& schema);

}  // namespace elm
