#include "eval/tasks.h"

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/data_dir.h"
#include "base/error.h"
#include "base/mmap_file.h"
#include "text/py_text.h"

namespace elm::eval {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// lm-eval's default target_delimiter: a choice is scored as " " + choice.
constexpr const char* kDelim = " ";

// SciQ is not shipped (no licensed copy was at hand); these names are looked for in the data
// folder, the original release's test.json first.
const char* const kSciqNames[] = {"sciq_test.json", "sciq_test.jsonl", "sciq.jsonl"};

const json& Field(const json& row, const char* key, const std::string& where) {
  if (!row.is_object()) Fail(where, ": expected a JSON object");
  const auto it = row.find(key);
  if (it == row.end()) Fail(where, ": missing field \"", key, "\"");
  return *it;
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

int Gold(const json& row, size_t n_choices, const std::string& where) {
  const json& v = Field(row, "gold", where);
  if (!v.is_number_integer()) Fail(where, ": field \"gold\" must be an integer");
  const auto g = v.get<int64_t>();
  if (g < 0 || g >= static_cast<int64_t>(n_choices))
    Fail(where, ": gold ", g, " is out of range for ", n_choices, " choices");
  return static_cast<int>(g);
}

// The usual multiple-choice doc: one context, one request per " " + choice.
Doc ChoiceDoc(std::string context, std::vector<std::string> choices, int gold, int index) {
  Doc d;
  d.index = index;
  for (const auto& c : choices) d.requests.push_back({context, kDelim + c});
  d.choices = std::move(choices);
  d.gold = gold;
  return d;
}

bool StartsWith(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}

// Splits a text file into lines ("\n" or "\r\n"); a final newline does not start another line.
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

using RowBuilder = Doc (*)(const json&, int, const std::string&);

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

std::vector<Doc> LoadSciq(const std::string& path) {
  const std::string text = ReadTextFile(path);
  const std::string_view body = text::PyLStrip(text);
  if (!StartsWith(body, "[")) return LoadJsonl(path, SciqDoc);  // HF datasets' JSON lines
  json rows;  // the original release: one JSON array per split (test.json)
  try {
    rows = json::parse(text);
  } catch (const json::exception& e) {
    Fail(path, ": malformed JSON: ", e.what());
  }
  std::vector<Doc> docs;
  for (size_t i = 0; i < rows.size(); ++i)
    docs.push_back(SciqDoc(rows[i], static_cast<int>(i), path + ": row " + std::to_string(i)));
  return docs;
}

std::vector<Doc> LoadHellaswag(const std::string& path) {
  const std::string text = ReadTextFile(path);
  if (StartsWith(text, "BZh"))
    Fail(path, ": bzip2-compressed; elm reads the decompressed text (bunzip2 -k ", path, ")");
  const auto lines = Lines(text);
  if (lines.size() % 6 != 0)
    Fail(path, ": ", lines.size(),
         " lines is not a multiple of 6 (HellaSwag text format: context, ",
         "gold label, then 4 endings per task)");
  std::vector<Doc> docs;
  docs.reserve(lines.size() / 6);
  for (size_t i = 0; i < lines.size(); i += 6) {
    const std::vector<std::string> block(lines.begin() + static_cast<std::ptrdiff_t>(i),
                                         lines.begin() + static_cast<std::ptrdiff_t>(i + 6));
    docs.push_back(
        HellaswagDoc(block, static_cast<int>(i / 6), path + ":" + std::to_string(i + 1)));
  }
  return docs;
}

}  // namespace

const std::vector<TaskInfo>& AllTasks() {
  static const std::vector<TaskInfo> tasks = {
      {"arc_easy", TaskKind::kMultipleChoice, true, "test", "arc_easy.jsonl"},
      {"arc_challenge", TaskKind::kMultipleChoice, true, "test", "arc_challenge.jsonl"},
      {"boolq", TaskKind::kMultipleChoice, false, "validation", "boolq.jsonl"},
      {"hellaswag", TaskKind::kMultipleChoice, true, "validation", "hellaswag_val.txt"},
      {"piqa", TaskKind::kMultipleChoice, true, "validation", "piqa.jsonl"},
      {"sciq", TaskKind::kMultipleChoice, true, "test", ""},
      {"winogrande", TaskKind::kMultipleChoice, false, "validation", "winogrande.jsonl"},
      {"lambada_openai", TaskKind::kLastWord, false, "test", "lambada_openai.jsonl"},
  };
  return tasks;
}

const TaskInfo& FindTask(const std::string& name) {
  std::string known;
  for (const auto& t : AllTasks()) {
    if (name == t.name) return t;
    known += (known.empty() ? "" : ", ") + std::string(t.name);
  }
  Fail("unknown task \"", name, "\" (known: ", known, ")");
}

std::vector<const TaskInfo*> ParseTaskList(const std::string& text) {
  std::vector<const TaskInfo*> out;
  size_t i = 0;
  while (i <= text.size()) {
    size_t j = text.find(',', i);
    if (j == std::string::npos) j = text.size();
    const std::string name(text::PyStrip(std::string_view(text).substr(i, j - i)));
    i = j + 1;
    if (name.empty()) continue;
    if (name == "all") {
      for (const auto& t : AllTasks()) out.push_back(&t);
      continue;
    }
    const TaskInfo* t = &FindTask(name);
    for (const TaskInfo* seen : out)
      if (seen == t) Fail("task \"", name, "\" is listed twice");
    out.push_back(t);
  }
  if (out.empty()) Fail("no task given");
  return out;
}

std::string ResolveDataDir(const std::string& explicit_dir) {
  if (!explicit_dir.empty()) {
    if (!fs::is_directory(explicit_dir)) Fail("eval data folder ", explicit_dir, " does not exist");
    return explicit_dir;
  }
  if (const char* env = std::getenv("ELM_EVAL_DATA_DIR"); env && *env) {
    if (!fs::is_directory(env)) Fail("$ELM_EVAL_DATA_DIR=", env, " is not a folder");
    return env;
  }
  if (std::string found = FindDataDir("eval"); !found.empty()) return found;
  Fail("cannot find the eval data: pass --data-dir DIR (a copy of elm's data/eval), set ",
       "$ELM_EVAL_DATA_DIR, or set $ELM_DATA_DIR to a folder holding eval/");
}

std::string TaskDataPath(const TaskInfo& task, const DataLocations& where) {
  if (std::string_view(task.name) == "sciq") {
    if (!where.sciq_file.empty()) {
      if (!fs::is_regular_file(where.sciq_file)) Fail("SciQ file ", where.sciq_file, " not found");
      return where.sciq_file;
    }
    for (const char* name : kSciqNames) {
      const fs::path p = fs::path(where.data_dir) / name;
      if (fs::is_regular_file(p)) return p.string();
    }
    return "";
  }
  const fs::path p = fs::path(where.data_dir) / task.file;
  if (!fs::is_regular_file(p)) Fail("task ", task.name, ": data file ", p.string(), " not found");
  return p.string();
}

std::string MissingDataError(const TaskInfo& task, const DataLocations& where) {
  std::string looked;
  for (const char* n : kSciqNames)
    looked += (looked.empty() ? "" : ", ") + (fs::path(where.data_dir) / n).string();
  return std::string("task ") + task.name + ": no data (none of " + looked +
         " exists). elm does not ship SciQ: download allenai/sciq's test.json (Hugging Face " +
         "dataset allenai/sciq) and pass --sciq FILE, or put it in " + where.data_dir +
         " under one of those names; --tasks all skips it when it is missing";
}

std::string MissingDataMessage(const TaskInfo& task, const DataLocations& where) {
  std::string names;
  for (const char* n : kSciqNames) names += (names.empty() ? "" : ", ") + std::string(n);
  return std::string(task.name) + ": skipped, no data (elm does not ship SciQ; pass --sciq FILE " +
         "with allenai/sciq's test.json or JSON lines, or put one of " + names + " in " +
         where.data_dir + ")";
}

std::vector<Doc> LoadDocs(const TaskInfo& task, const std::string& path) {
  const std::string_view name = task.name;
  if (name == "arc_easy" || name == "arc_challenge") return LoadJsonl(path, ArcDoc);
  if (name == "boolq") return LoadJsonl(path, BoolqDoc);
  if (name == "piqa") return LoadJsonl(path, PiqaDoc);
  if (name == "winogrande") return LoadJsonl(path, WinograndeDoc);
  if (name == "lambada_openai") return LoadJsonl(path, LambadaDoc);
  if (name == "sciq") return LoadSciq(path);
  if (name == "hellaswag") return LoadHellaswag(path);
  Fail("task ", name, " has no loader");
}

// arc/arc_easy.yaml: "Question: {{question}}\nAnswer:"; llm-foundry's query already carries the
// "Question: " prefix.
Doc ArcDoc(const json& row, int index, const std::string& where) {
  const std::string query = Str(row, "query", where);
  auto choices = StrList(row, "choices", where);
  const int gold = Gold(row, choices.size(), where);
  return ChoiceDoc(query + "\nAnswer:", std::move(choices), gold, index);
}

// super_glue/boolq: "{{passage}}\nQuestion: {{question}}?\nAnswer:" with choices no/yes;
// llm-foundry's query is "Passage: P\nQuestion: Q?", so dropping "Passage: " gives lm-eval's.
Doc BoolqDoc(const json& row, int index, const std::string& where) {
  const std::string query = Str(row, "query", where);
  constexpr std::string_view kPassage = "Passage: ";
  if (!StartsWith(query, kPassage)) Fail(where, ": BoolQ query does not start with \"Passage: \"");
  auto choices = StrList(row, "choices", where);
  if (choices != std::vector<std::string>{"no", "yes"})
    Fail(where, ": BoolQ choices must be [\"no\", \"yes\"]");
  const int gold = Gold(row, choices.size(), where);
  return ChoiceDoc(query.substr(kPassage.size()) + "\nAnswer:", std::move(choices), gold, index);
}

// piqa.yaml: "Question: {{goal}}\nAnswer:"; llm-foundry's query is "Question: goal\n".
Doc PiqaDoc(const json& row, int index, const std::string& where) {
  const std::string query = Str(row, "query", where);
  auto choices = StrList(row, "choices", where);
  const int gold = Gold(row, choices.size(), where);
  return ChoiceDoc(query + "Answer:", std::move(choices), gold, index);
}

// winogrande (partial scoring): one context per option, the sentence up to the blank with that
// option filled in; the shared tail after the blank is the scored continuation.
Doc WinograndeDoc(const json& row, int index, const std::string& where) {
  auto options = StrList(row, "context_options", where);
  const std::string cont = Str(row, "continuation", where);
  if (cont.empty()) Fail(where, ": empty WinoGrande continuation");
  Doc d;
  d.index = index;
  for (const auto& ctx : options) d.requests.push_back({ctx, kDelim + cont});
  d.gold = Gold(row, options.size(), where);
  d.choices = std::move(options);
  return d;
}

// lambada_openai: context = text without its last word, target = " " + last word, a plain
// loglikelihood request (no extra delimiter).
Doc LambadaDoc(const json& row, int index, const std::string& where) {
  Doc d;
  d.index = index;
  const std::string word = Str(row, "continuation", where);
  if (word.empty()) Fail(where, ": empty LAMBADA continuation");
  d.requests.push_back({Str(row, "context", where), " " + word});
  return d;
}

// sciq.yaml: "{{support.lstrip()}}\nQuestion: {{question}}\nAnswer:", choices
// [distractor1, distractor2, distractor3, correct_answer], gold always 3.
Doc SciqDoc(const json& row, int index, const std::string& where) {
  const std::string support(text::PyLStrip(Str(row, "support", where)));
  std::vector<std::string> choices = {
      Str(row, "distractor1", where), Str(row, "distractor2", where),
      Str(row, "distractor3", where), Str(row, "correct_answer", where)};
  const std::string context = support + "\nQuestion: " + Str(row, "question", where) + "\nAnswer:";
  return ChoiceDoc(context, std::move(choices), 3, index);
}

Doc HellaswagDoc(const std::vector<std::string>& lines, int index, const std::string& where) {
  if (lines.size() != 6) Fail(where, ": a HellaSwag task has 6 lines, got ", lines.size());
  const std::string& label = lines[1];
  if (label.size() != 1 || label[0] < '0' || label[0] > '3')
    Fail(where, ": line 2 of a HellaSwag task must be the gold index 0-3, got \"", label, "\"");
  std::vector<std::string> endings;
  for (int k = 2; k < 6; ++k) endings.push_back(HellaswagPreprocess(lines[k]));
  return ChoiceDoc(HellaswagPreprocess(lines[0]), std::move(endings), label[0] - '0', index);
}

std::string HellaswagPreprocess(std::string_view text) {
  // The klosax file is already mostly preprocessed; running lm-eval's preprocess again is a
  // no-op on all but 14 of its 60k lines, where it removes "[...]" spans lm-eval removes too.
  const std::string_view stripped = text::PyStrip(text);
  std::string a;  // " [title]" -> ". "
  for (size_t i = 0; i < stripped.size();) {
    if (stripped.substr(i, 8) == " [title]") {
      a += ". ";
      i += 8;
    } else {
      a += stripped[i++];
    }
  }
  std::string b;  // re.sub("\\[.*?\\]", "", text)
  for (size_t i = 0; i < a.size();) {
    const size_t close = a[i] == '[' ? a.find(']', i + 1) : std::string::npos;
    if (close != std::string::npos) {
      i = close + 1;
    } else {
      b += a[i++];
    }
  }
  std::string c;  // .replace("  ", " "), one left-to-right pass as Python does
  for (size_t i = 0; i < b.size();) {
    if (b.compare(i, 2, "  ") == 0) {
      c += ' ';
      i += 2;
    } else {
      c += b[i++];
    }
  }
  return c;
}

}  // namespace elm::eval
