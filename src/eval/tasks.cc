#include "eval/tasks.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/data_dir.h"
#include "base/error.h"
#include "base/mmap_file.h"
#include "eval/task_rows.h"
#include "text/py_text.h"

namespace elm::eval {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using namespace rows;  // NOLINT: the shared row helpers (task_rows.h)

// The rows of a JSON-lines file or a JSON array (an original release's file) through `build`.
std::vector<Doc> LoadRows(const std::string& path, RowBuilder build) {
  std::vector<std::string> where;
  const auto rows = ReadRows(path, &where);
  std::vector<Doc> docs;
  docs.reserve(rows.size());
  for (size_t i = 0; i < rows.size(); ++i)
    docs.push_back(build(rows[i], static_cast<int>(i), where[i]));
  return docs;
}

std::vector<Doc> LoadHellaswag(const std::string& path) {
  const std::string text = ReadTextFile(path);
  // Hugging Face rows (activity_label, ctx_a, ctx_b, endings, label), e.g. the train split.
  if (StartsWith(text::PyLStrip(text), "{")) return LoadRows(path, HellaswagJsonDoc);
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
  using K = TaskKind;
  // Few-shot settings follow each task's YAML at lm-eval dc90fec: the examples come from the
  // training split unless the YAML names fewshot_split; tasks with neither a test_split nor a
  // fewshot_split (those scored on validation) draw one extra example (docs/evaluation.md).
  static const std::vector<TaskInfo> tasks = {
      {.name = "arc_easy",
       .kind = K::kMultipleChoice,
       .acc_norm = true,
       .split = "test",
       .file = "arc_easy.jsonl",
       .fewshot_file = "arc_easy_train.jsonl",
       .obtain = "Hugging Face allenai/ai2_arc, config ARC-Easy, split train, as JSON lines"},
      {.name = "arc_challenge",
       .kind = K::kMultipleChoice,
       .acc_norm = true,
       .split = "test",
       .file = "arc_challenge.jsonl",
       .fewshot_file = "arc_challenge_train.jsonl",
       .obtain = "Hugging Face allenai/ai2_arc, config ARC-Challenge, split train, as JSON lines"},
      {.name = "boolq",
       .kind = K::kMultipleChoice,
       .acc_norm = false,
       .split = "validation",
       .file = "boolq.jsonl",
       .fewshot_file = "boolq_train.jsonl",
       .fewshot_draws_extra = true,
       .obtain = "Hugging Face super_glue, config boolq, split train, as JSON lines"},
      {.name = "hellaswag",
       .kind = K::kMultipleChoice,
       .acc_norm = true,
       .split = "validation",
       .file = "hellaswag_val.txt",
       .fewshot_file = "hellaswag_train.jsonl",
       .fewshot_draws_extra = true,
       .obtain = "Hugging Face Rowan/hellaswag, split train, as JSON lines"},
      {.name = "piqa",
       .kind = K::kMultipleChoice,
       .acc_norm = true,
       .split = "validation",
       .file = "piqa.jsonl",
       .fewshot_file = "piqa_train.jsonl",
       .fewshot_draws_extra = true,
       .obtain = "Hugging Face ybisk/piqa, split train, as JSON lines"},
      {.name = "sciq",
       .kind = K::kMultipleChoice,
       .acc_norm = true,
       .split = "test",
       .file = "sciq_test.json|sciq_test.jsonl|sciq.jsonl",
       .shipped = false,
       .fewshot_file = "sciq_train.json|sciq_train.jsonl",
       .obtain = "elm does not ship SciQ: download allenai/sciq's test.json (Hugging Face "
                 "dataset allenai/sciq) and pass --sciq FILE, or put it in the data folder"},
      {.name = "winogrande",
       .kind = K::kMultipleChoice,
       .acc_norm = false,
       .split = "validation",
       .file = "winogrande.jsonl",
       .fewshot_file = "winogrande_train.jsonl",
       .fewshot_draws_extra = true,
       .obtain =
           "Hugging Face allenai/winogrande, config winogrande_xl, split train, as JSON lines"},
      {.name = "lambada_openai",
       .kind = K::kLastWord,
       .acc_norm = false,
       .split = "test",
       .file = "lambada_openai.jsonl",
       .fewshot_split = ""},
      {.name = "mmlu",
       .kind = K::kMultipleChoice,
       .acc_norm = false,
       .split = "test",
       .file = "mmlu_test.jsonl|mmlu/test",
       .shipped = false,
       .fewshot_split = "dev",
       .fewshot_file = "mmlu_dev.jsonl|mmlu/dev",
       .sampling = FewshotSampling::kFirstN,
       .obtain =
           "Hugging Face cais/mmlu, config all, splits test and dev, as JSON lines "
           "mmlu_test.jsonl and mmlu_dev.jsonl, or the original release's data/test and data/dev "
           "CSV folders as mmlu/test and mmlu/dev"},
      {.name = "truthfulqa_mc2",
       .kind = K::kMc2,
       .acc_norm = false,
       .split = "validation",
       .file = "truthfulqa_mc.jsonl",
       .shipped = false,
       .fewshot_split = "",
       .zero_shot_only = true,
       .obtain = "Hugging Face truthful_qa, config multiple_choice, split validation, as JSON "
                 "lines truthfulqa_mc.jsonl"},
      {.name = "race",
       .kind = K::kMultipleChoice,
       .acc_norm = false,
       .split = "test",
       .file = "race_high_test.jsonl|race.jsonl",
       .shipped = false,
       .fewshot_split = "",
       .obtain = "Hugging Face EleutherAI/race, config high, split test, as JSON lines "
                 "race_high_test.jsonl"},
      {.name = "crows_pairs_english",
       .kind = K::kPairBias,
       .acc_norm = false,
       .split = "test",
       .file = "crows_pairs_english.jsonl|crows_pairs_anonymized.csv",
       .shipped = false,
       .fewshot_split = "",
       .obtain = "Hugging Face BigScienceBiasEval/crows_pairs_multilingual, config english, "
                 "split test, as JSON lines crows_pairs_english.jsonl (or the original release's "
                 "crows_pairs_anonymized.csv, a different revision of the pairs)"},
      {.name = "siqa",
       .kind = K::kMultipleChoice,
       .acc_norm = false,
       .split = "validation",
       .file = "siqa_validation.jsonl|social_iqa_validation.jsonl",
       .shipped = false,
       .fewshot_file = "siqa_train.jsonl|social_iqa_train.jsonl",
       .fewshot_draws_extra = true,
       .obtain = "Hugging Face allenai/social_i_qa, splits validation and train, as JSON lines "
                 "siqa_validation.jsonl and siqa_train.jsonl",
       .lm_eval_name = "social_iqa"},
      {.name = "openbookqa",
       .kind = K::kMultipleChoice,
       .acc_norm = true,
       .split = "test",
       .file = "openbookqa_test.jsonl|openbookqa.jsonl",
       .fewshot_file = "openbookqa_train.jsonl",
       .obtain = "Hugging Face allenai/openbookqa, config main, splits test and train, as JSON "
                 "lines openbookqa_test.jsonl and openbookqa_train.jsonl (the test split ships "
                 "as openbookqa.jsonl)"},
  };
  return tasks;
}

const TaskInfo& FindTask(const std::string& name) {
  std::string known;
  for (const auto& t : AllTasks()) {
    if (name == t.name || (t.lm_eval_name && name == t.lm_eval_name)) return t;
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

namespace {

std::vector<std::string> SplitNames(const char* names) {
  std::vector<std::string> out;
  std::string_view s = names;
  while (!s.empty()) {
    const size_t bar = s.find('|');
    out.emplace_back(s.substr(0, bar));
    if (bar == std::string_view::npos) break;
    s.remove_prefix(bar + 1);
  }
  return out;
}

std::string FirstExisting(const char* names, const std::string& dir) {
  for (const auto& n : SplitNames(names)) {
    const fs::path p = fs::path(dir) / n;
    if (fs::exists(p)) return p.string();
  }
  return "";
}

std::string LookedFor(const char* names, const std::string& dir) {
  std::string looked;
  for (const auto& n : SplitNames(names))
    looked += (looked.empty() ? "" : ", ") + (fs::path(dir) / n).string();
  return looked;
}

std::string Explicit(const TaskInfo& task, const DataLocations& where) {
  if (std::string_view(task.name) == "sciq" && !where.sciq_file.empty()) return where.sciq_file;
  const auto it = where.files.find(task.name);
  return it == where.files.end() ? "" : it->second;
}

}  // namespace

std::string TaskDataPath(const TaskInfo& task, const DataLocations& where) {
  if (const std::string file = Explicit(task, where); !file.empty()) {
    if (!fs::exists(file)) Fail("task ", task.name, ": data file ", file, " not found");
    return file;
  }
  const std::string found = FirstExisting(task.file, where.data_dir);
  if (!found.empty() || !task.shipped) return found;
  Fail("task ", task.name, ": data file ", LookedFor(task.file, where.data_dir), " not found");
}

std::string MissingDataError(const TaskInfo& task, const DataLocations& where) {
  const bool sciq = std::string_view(task.name) == "sciq";
  return std::string("task ") + task.name + ": no data (none of " +
         LookedFor(task.file, where.data_dir) + " exists). " + task.obtain +
         (sciq ? "" : " (or pass --data " + std::string(task.name) + "=FILE)") +
         "; --tasks all skips it when it is missing";
}

std::string MissingDataMessage(const TaskInfo& task, const DataLocations& where) {
  const bool sciq = std::string_view(task.name) == "sciq";
  std::string names;
  for (const auto& n : SplitNames(task.file)) names += (names.empty() ? "" : ", ") + n;
  return std::string(task.name) + ": skipped, no data (" +
         (sciq ? std::string("elm does not ship SciQ; pass --sciq FILE with allenai/sciq's "
                             "test.json or JSON lines")
               : std::string(task.obtain) + ", or pass --data " + task.name + "=FILE") +
         ", or put one of " + names + " in " + where.data_dir + ")";
}

std::string FewshotDataPath(const TaskInfo& task, const DataLocations& where) {
  if (const auto it = where.fewshot_files.find(task.name); it != where.fewshot_files.end()) {
    if (!fs::exists(it->second))
      Fail("task ", task.name, ": few-shot file ", it->second, " not found");
    return it->second;
  }
  if (*task.fewshot_split == '\0') return "";
  const std::string found = FirstExisting(task.fewshot_file, where.data_dir);
  if (!found.empty()) return found;
  Fail("task ", task.name, ": few-shot examples come from its ", task.fewshot_split,
       " split, and none of ", LookedFor(task.fewshot_file, where.data_dir),
       " exists. Get it from ", task.obtain, ", put it there or pass --fewshot-data ", task.name,
       "=FILE (or run it with --num-fewshot 0)");
}

std::vector<Doc> LoadDocs(const TaskInfo& task, const std::string& path) {
  const std::string_view name = task.name;
  if (name == "arc_easy" || name == "arc_challenge") return LoadRows(path, ArcDoc);
  if (name == "boolq") return LoadRows(path, BoolqDoc);
  if (name == "piqa") return LoadRows(path, PiqaDoc);
  if (name == "winogrande") return LoadRows(path, WinograndeDoc);
  if (name == "lambada_openai") return LoadRows(path, LambadaDoc);
  if (name == "sciq") return LoadRows(path, SciqDoc);
  if (name == "hellaswag") return LoadHellaswag(path);
  if (name == "mmlu") return LoadMmlu(path);
  if (name == "truthfulqa_mc2") return LoadRows(path, TruthfulqaMc2Doc);
  if (name == "race") return LoadRows(path, RaceDoc);
  if (name == "crows_pairs_english") return LoadCrowsPairs(path);
  if (name == "siqa") return LoadRows(path, SiqaDoc);
  if (name == "openbookqa") return LoadRows(path, OpenbookqaDoc);
  Fail("task ", name, " has no loader");
}

// arc/arc_easy.yaml: "Question: {{question}}\nAnswer:", choices choices.text, gold
// choices.label.index(answerKey). llm-foundry's query already carries the "Question: " prefix;
// Hugging Face rows have question, choices {text, label} and answerKey.
Doc ArcDoc(const json& row, int index, const std::string& where) {
  if (!Has(row, "query")) {
    const std::string question = Str(row, "question", where);
    const json& ch = Field(row, "choices", where);
    auto choices = StrList(ch, "text", where + " (choices)");
    const auto labels = StrList(ch, "label", where + " (choices)");
    if (labels.size() != choices.size())
      Fail(where, ": choices.text and choices.label differ in length");
    const std::string key = Str(row, "answerKey", where);
    const auto it = std::find(labels.begin(), labels.end(), key);
    if (it == labels.end()) Fail(where, ": answerKey \"", key, "\" is not one of choices.label");
    return ChoiceDoc("Question: " + question + "\nAnswer:", std::move(choices),
                     static_cast<int>(it - labels.begin()), index);
  }
  const std::string query = Str(row, "query", where);
  auto choices = StrList(row, "choices", where);
  const int gold = Gold(row, choices.size(), where);
  return ChoiceDoc(query + "\nAnswer:", std::move(choices), gold, index);
}

// super_glue/boolq: "{{passage}}\nQuestion: {{question}}?\nAnswer:" with choices no/yes;
// llm-foundry's query is "Passage: P\nQuestion: Q?", so dropping "Passage: " gives lm-eval's.
// Hugging Face rows have passage, question and label (1 = yes).
Doc BoolqDoc(const json& row, int index, const std::string& where) {
  if (!Has(row, "query")) {
    const std::string context =
        Str(row, "passage", where) + "\nQuestion: " + Str(row, "question", where) + "?\nAnswer:";
    const int gold = CheckGold(IntLike(row, "label", where), 2, where, "label");
    return ChoiceDoc(context, {"no", "yes"}, gold, index);
  }
  const std::string query = Str(row, "query", where);
  constexpr std::string_view kPassage = "Passage: ";
  if (!StartsWith(query, kPassage)) Fail(where, ": BoolQ query does not start with \"Passage: \"");
  auto choices = StrList(row, "choices", where);
  if (choices != std::vector<std::string>{"no", "yes"})
    Fail(where, ": BoolQ choices must be [\"no\", \"yes\"]");
  const int gold = Gold(row, choices.size(), where);
  return ChoiceDoc(query.substr(kPassage.size()) + "\nAnswer:", std::move(choices), gold, index);
}

// piqa.yaml: "Question: {{goal}}\nAnswer:"; llm-foundry's query is "Question: goal\n". Hugging
// Face rows have goal, sol1, sol2 and label.
Doc PiqaDoc(const json& row, int index, const std::string& where) {
  if (!Has(row, "query")) {
    const int gold = CheckGold(IntLike(row, "label", where), 2, where, "label");
    return ChoiceDoc("Question: " + Str(row, "goal", where) + "\nAnswer:",
                     {Str(row, "sol1", where), Str(row, "sol2", where)}, gold, index);
  }
  const std::string query = Str(row, "query", where);
  auto choices = StrList(row, "choices", where);
  const int gold = Gold(row, choices.size(), where);
  return ChoiceDoc(query + "Answer:", std::move(choices), gold, index);
}

// winogrande (partial scoring): one context per option, the sentence up to the blank with that
// option filled in; the shared tail after the blank is the scored continuation. Hugging Face
// rows (sentence, option1, option2, answer "1"/"2") are split as preprocess_winogrande.py does.
Doc WinograndeDoc(const json& row, int index, const std::string& where) {
  std::vector<std::string> options;
  std::string cont;
  int gold = 0;
  if (!Has(row, "context_options")) {
    const std::string sentence = Str(row, "sentence", where);
    const size_t blank = sentence.find('_');
    if (blank == std::string::npos) Fail(where, ": WinoGrande sentence has no \"_\" blank");
    const std::string head = sentence.substr(0, blank);
    options = {head + Str(row, "option1", where), head + Str(row, "option2", where)};
    cont = std::string(text::PyStrip(std::string_view(sentence).substr(blank + 1)));
    const std::string answer = Str(row, "answer", where);
    if (answer != "1" && answer != "2") Fail(where, ": WinoGrande answer must be \"1\" or \"2\"");
    gold = answer == "1" ? 0 : 1;
  } else {
    options = StrList(row, "context_options", where);
    cont = Str(row, "continuation", where);
    gold = Gold(row, options.size(), where);
  }
  if (cont.empty()) Fail(where, ": empty WinoGrande continuation");
  Doc d;
  d.index = index;
  for (const auto& ctx : options) d.requests.push_back({ctx, kDelim + cont});
  d.gold = gold;
  d.example = options[static_cast<size_t>(gold)] + kDelim + cont;
  d.choices = std::move(options);
  return d;
}

// lambada_openai: context = text without its last word, target = " " + last word, a plain
// loglikelihood request (no extra delimiter). Hugging Face rows carry the whole text.
Doc LambadaDoc(const json& row, int index, const std::string& where) {
  Doc d;
  d.index = index;
  std::string context, word;
  if (!Has(row, "continuation")) {
    const std::string text = Str(row, "text", where);
    const size_t space = text.rfind(' ');  // text.split(' ')[:-1] / [-1]
    context = space == std::string::npos ? "" : text.substr(0, space);
    word = space == std::string::npos ? text : text.substr(space + 1);
  } else {
    context = Str(row, "context", where);
    word = Str(row, "continuation", where);
  }
  if (word.empty()) Fail(where, ": empty LAMBADA continuation");
  d.requests.push_back({context, " " + word});
  // As a few-shot example: doc_to_text + target_delimiter + doc_to_target (" " + word).
  d.example = context + kDelim + " " + word;
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

// hellaswag/utils.py process_docs: preprocess(activity_label + ": " + ctx_a + " " +
// ctx_b.capitalize()), endings preprocessed, gold int(label).
Doc HellaswagJsonDoc(const json& row, int index, const std::string& where) {
  const std::string ctx = Str(row, "ctx_a", where) + " " + PyCapitalize(Str(row, "ctx_b", where));
  std::vector<std::string> endings;
  for (const auto& e : StrList(row, "endings", where)) endings.push_back(HellaswagPreprocess(e));
  const int gold = CheckGold(IntLike(row, "label", where), endings.size(), where, "label");
  return ChoiceDoc(HellaswagPreprocess(Str(row, "activity_label", where) + ": " + ctx),
                   std::move(endings), gold, index);
}

std::string PyCapitalize(std::string_view s) {
  std::string out(s);
  for (size_t i = 0; i < out.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(out[i]);
    if (c >= 0x80) continue;  // non-ASCII: kept as is (docs/evaluation.md)
    out[i] = static_cast<char>(i == 0 ? std::toupper(c) : std::tolower(c));
  }
  return out;
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
