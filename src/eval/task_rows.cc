#include "eval/task_rows.h"

#include "base/error.h"
#include "base/mmap_file.h"
#include "text/py_text.h"

namespace elm::eval::rows {
using nlohmann::json;

const json& Field(const json& row, const char* key, const std::string& where) {
  if (!row.is_object()) Fail(where, ": expected a JSON object");
  const auto it = row.find(key);
  if (it == row.end()) Fail(where, ": missing field \"", key, "\"");
  return *it;
}

bool Has(const json& row, const char* key) {
  return row.is_object() && row.contains(key);
}

std::string Str(const json& row, const char* key, const std::string& where) {
  const json& v = Field(row, key, where);
  if (!v.is_string()) Fail(where, ": field \"", key, "\" must be a string");
  return v.get<std::string>();
}

std::vector<std::string> StrList(const json& row, const char* key, const std::string& where) {
  const json& v = Field(row, key, where);
  if (!v.is_array() || v.empty()) Fail(where, ": field \"", key, "\" must be a non-empty array");
  std::vector<std::string> out;
  for (const auto& e : v) {
    if (!e.is_string()) Fail(where, ": field \"", key, "\" must hold strings");
    out.push_back(e.get<std::string>());
  }
  return out;
}

int64_t IntLike(const json& row, const char* key, const std::string& where) {
  const json& v = Field(row, key, where);
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (!s.empty() && s.size() <= 9 && s.find_first_not_of("0123456789") == std::string::npos)
      return std::stoll(s);
  }
  Fail(where, ": field \"", key, "\" must be an integer");
}

int CheckGold(int64_t g, size_t n_choices, const std::string& where, const char* field) {
  if (g < 0 || g >= static_cast<int64_t>(n_choices))
    Fail(where, ": ", field, " ", g, " is out of range for ", n_choices, " choices");
  return static_cast<int>(g);
}

int Gold(const json& row, size_t n_choices, const std::string& where) {
  const json& v = Field(row, "gold", where);
  if (!v.is_number_integer()) Fail(where, ": field \"gold\" must be an integer");
  const auto g = v.get<int64_t>();
  if (g < 0 || g >= static_cast<int64_t>(n_choices))
    Fail(where, ": gold ", g, " is out of range for ", n_choices, " choices");
  return static_cast<int>(g);
}

Doc ChoiceDoc(std::string context, std::vector<std::string> choices, int gold, int index) {
  Doc d;
  d.index = index;
  for (const auto& c : choices) d.requests.push_back({context, kDelim + c});
  d.example = context + kDelim + choices.at(static_cast<size_t>(gold));
  d.choices = std::move(choices);
  d.gold = gold;
  return d;
}

bool StartsWith(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t i = 0;
  while (i < text.size()) {
    size_t j = text.find('\n', i);
    if (j == std::string::npos) j = text.size();
    size_t end = j;
    if (end > i && text[end - 1] == '\r') --end;
    lines.push_back(text.substr(i, end - i));
    i = j + 1;
  }
  return lines;
}

std::vector<json> ReadRows(const std::string& path, std::vector<std::string>* where) {
  const std::string text = ReadTextFile(path);
  std::vector<json> out;
  where->clear();
  if (StartsWith(text::PyLStrip(text), "[")) {
    json rows;
    try {
      rows = json::parse(text);
    } catch (const json::exception& e) {
      Fail(path, ": malformed JSON: ", e.what());
    }
    for (size_t i = 0; i < rows.size(); ++i) {
      out.push_back(rows[i]);
      where->push_back(path + ": row " + std::to_string(i));
    }
    return out;
  }
  const auto lines = Lines(text);
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string w = path + ":" + std::to_string(i + 1);
    if (text::PyStrip(lines[i]).empty())
      Fail(w, ": empty line (one JSON object per line expected)");
    try {
      out.push_back(json::parse(lines[i]));
    } catch (const json::exception& e) {
      Fail(w, ": malformed JSON: ", e.what());
    }
    where->push_back(w);
  }
  return out;
}

std::vector<Doc> LoadJsonl(const std::string& path, RowBuilder build) {
  const auto lines = Lines(ReadTextFile(path));
  std::vector<Doc> docs;
  docs.reserve(lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string where = path + ":" + std::to_string(i + 1);
    if (text::PyStrip(lines[i]).empty())
      Fail(where, ": empty line (one JSON object per line expected)");
    json row;
    try {
      row = json::parse(lines[i]);
    } catch (const json::exception& e) {
      Fail(where, ": malformed JSON: ", e.what());
    }
    docs.push_back(build(row, static_cast<int>(i), where));
  }
  return docs;
}

}  // namespace elm::eval::rows
