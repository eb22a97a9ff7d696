// libFuzzer target for structured output's parsers (docs/sampling.md, "Grammars and JSON
// schemas"): byte 0 even, the rest is GBNF text for ParseGbnf; odd, a JSON schema for
// JsonSchemaToGbnf, whose output then goes through ParseGbnf (as the server and `elm generate`
// do). A grammar that parses is then run: its first state, and the input's own bytes fed to the
// matcher one by one. A rejection must be an elm::Error; anything else aborts (fuzz_util.h).
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "grammar/grammar.h"
#include "grammar/grammar_matcher.h"
#include "grammar/json_schema.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool schema = data[0] & 1;
  const std::string text(elm_fuzz::AsText(data + 1, size - 1));
  elm_fuzz::ExpectOnlyElmErrors([&] {
    std::string gbnf = text;
    if (schema) {
      nlohmann::ordered_json j;
      try {
        j = nlohmann::ordered_json::parse(text);
      } catch (const nlohmann::json::exception&) {
        return;  // not JSON: the server's body parser answers that, not the translator
      }
      gbnf = elm::JsonSchemaToGbnf(j);
    }
    const elm::Grammar g = elm::ParseGbnf(gbnf, "fuzz");
    const elm::GrammarMatcher m(g);
    elm::GrammarState s = m.Initial();
    elm::GrammarState next;
    for (size_t i = 0; i < text.size() && i < 256; ++i) {
      if (!m.Advance(s, static_cast<uint8_t>(text[i]), next)) break;
      std::swap(s, next);
    }
    (void)elm::GrammarMatcher::CanEnd(s);
  });
  return 0;
}
