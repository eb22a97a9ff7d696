// Helpers the task readers share (tasks.cc and the task-family files): typed field access on a
// JSON row with errors that name the file and line, the JSON-lines and plain-text readers, and
// the usual multiple-choice doc. Internal to src/eval.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "eval/tasks.h"

namespace elm::eval::rows {

// lm-eval's default target_delimiter: a choice is scored as " " + choice.
inline constexpr const char* kDelim = " ";

const nlohmann::json& Field(const nlohmann::json& row, const char* key, const std::string& where);
bool Has(const nlohmann::json& row, const char* key);
std::string Str(const nlohmann::json& row, const char* key, const std::string& where);
std::vector<std::string> StrList(const nlohmann::json& row, const char* key,
                                 const std::string& where);
// An int field, or a string of decimal digits (HF exports keep some labels as strings).
int64_t IntLike(const nlohmann::json& row, const char* key, const std::string& where);
// The "gold" field, checked against the number of choices.
int Gold(const nlohmann::json& row, size_t n_choices, const std::string& where);
// Checks that `gold` indexes `n_choices`.
int CheckGold(int64_t gold, size_t n_choices, const std::string& where, const char* field);

// One context, one request per " " + choice; the few-shot example is context + " " + gold choice.
Doc ChoiceDoc(std::string context, std::vector<std::string> choices, int gold, int index);

bool StartsWith(std::string_view s, std::string_view p);
// Lines of a text ("\n" or "\r\n"); a final newline does not start another line.
std::vector<std::string> Lines(const std::string& text);

using RowBuilder = Doc (*)(const nlohmann::json&, int, const std::string&);
// Every line of `path` as a JSON object through `build`; errors name path:line.
std::vector<Doc> LoadJsonl(const std::string& path, RowBuilder build);
// The JSON objects of `path`: JSON lines, or one JSON array (an original release's file).
// `where[i]` names row i in errors.
std::vector<nlohmann::json> ReadRows(const std::string& path, std::vector<std::string>* where);

}  // namespace elm::eval::rows
