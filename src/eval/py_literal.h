// A reader for the Python literals Hugging Face exports keep in string columns (RACE's
// `problems` is the repr of a list of dicts, which lm-eval's preprocess_race.py reads with
// ast.literal_eval): lists, tuples, dicts, str (single, double or triple quotes, with escapes),
// int, float, True/False/None. Enough of ast.literal_eval for data files, into nlohmann::json.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace elm::eval {

// Parses `text` as one Python literal. Throws elm::Error naming `where` and the byte offset for
// anything else (a malformed or unsupported literal, nesting deeper than 64).
nlohmann::json ParsePyLiteral(std::string_view text, const std::string& where);

}  // namespace elm::eval
