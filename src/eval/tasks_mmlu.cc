// MMLU as lm-eval's mmlu/default at dc90fec (_default_template_yaml, one task per subject,
// grouped into stem / other / social_sciences / humanities; docs/evaluation.md "MMLU").
#include <algorithm>
#include <filesystem>
#include <map>

#include "base/error.h"
#include "base/mmap_file.h"
#include "eval/csv.h"
#include "eval/task_rows.h"
#include "eval/tasks.h"
#include "text/py_text.h"

namespace elm::eval {
namespace fs = std::filesystem;
using nlohmann::json;
using namespace rows;  // NOLINT: the shared row helpers (task_rows.h)

const std::vector<std::pair<std::string, std::string>>& MmluSubjects() {
  // The "group" of each mmlu/default/mmlu_<subject>.yaml, without its "mmlu_" prefix.
  static const std::vector<std::pair<std::string, std::string>> subjects = {
      {"abstract_algebra", "stem"},
      {"anatomy", "stem"},
      {"astronomy", "stem"},
      {"business_ethics", "other"},
      {"clinical_knowledge", "other"},
      {"college_biology", "stem"},
      {"college_chemistry", "stem"},
      {"college_computer_science", "stem"},
      {"college_mathematics", "stem"},
      {"college_medicine", "other"},
      {"college_physics", "stem"},
      {"computer_security", "stem"},
      {"conceptual_physics", "stem"},
      {"econometrics", "social_sciences"},
      {"electrical_engineering", "stem"},
      {"elementary_mathematics", "stem"},
      {"formal_logic", "humanities"},
      {"global_facts", "other"},
      {"high_school_biology", "stem"},
      {"high_school_chemistry", "stem"},
      {"high_school_computer_science", "stem"},
      {"high_school_european_history", "humanities"},
      {"high_school_geography", "social_sciences"},
      {"high_school_government_and_politics", "social_sciences"},
      {"high_school_macroeconomics", "social_sciences"},
      {"high_school_mathematics", "stem"},
      {"high_school_microeconomics", "social_sciences"},
      {"high_school_physics", "stem"},
      {"high_school_psychology", "social_sciences"},
      {"high_school_statistics", "stem"},
      {"high_school_us_history", "humanities"},
      {"high_school_world_history", "humanities"},
      {"human_aging", "other"},
      {"human_sexuality", "social_sciences"},
      {"international_law", "humanities"},
      {"jurisprudence", "humanities"},
      {"logical_fallacies", "humanities"},
      {"machine_learning", "stem"},
      {"management", "other"},
      {"marketing", "other"},
      {"medical_genetics", "other"},
      {"miscellaneous", "other"},
      {"moral_disputes", "humanities"},
      {"moral_scenarios", "humanities"},
      {"nutrition", "other"},
      {"philosophy", "humanities"},
      {"prehistory", "humanities"},
      {"professional_accounting", "other"},
      {"professional_law", "humanities"},
      {"professional_medicine", "other"},
      {"professional_psychology", "social_sciences"},
      {"public_relations", "social_sciences"},
      {"security_studies", "social_sciences"},
      {"sociology", "social_sciences"},
      {"us_foreign_policy", "social_sciences"},
      {"virology", "other"},
      {"world_religions", "humanities"},
  };
  return subjects;
}

// doc_to_text "{{question.strip()}}\nA. {{choices[0]}}\nB. ...\nD. {{choices[3]}}\nAnswer:",
// choices A-D, target `answer` (an int; a letter A-D is accepted too), description
// "The following are multiple choice questions (with answers) about <subject, _ -> space>.\n\n".
Doc MmluDoc(const json& row, int index, const std::string& where) {
  const std::string subject = Str(row, "subject", where);
  bool known = false;
  for (const auto& [name, group] : MmluSubjects()) known = known || name == subject;
  if (!known) Fail(where, ": \"", subject, "\" is not one of MMLU's 57 subjects");
  const auto options = StrList(row, "choices", where);
  if (options.size() != 4) Fail(where, ": MMLU needs 4 choices, got ", options.size());
  int64_t answer = 0;
  const json& a = Field(row, "answer", where);
  if (a.is_string() && a.get<std::string>().size() == 1 && a.get<std::string>()[0] >= 'A' &&
      a.get<std::string>()[0] <= 'D') {
    answer = a.get<std::string>()[0] - 'A';
  } else {
    answer = IntLike(row, "answer", where);
  }
  const int gold = CheckGold(answer, 4, where, "answer");
  std::string context(text::PyStrip(Str(row, "question", where)));
  const char* letters[] = {"A", "B", "C", "D"};
  for (size_t k = 0; k < 4; ++k) context += std::string("\n") + letters[k] + ". " + options[k];
  context += "\nAnswer:";
  Doc d = ChoiceDoc(context, {"A", "B", "C", "D"}, gold, index);
  std::string spaced = subject;
  for (char& c : spaced)
    if (c == '_') c = ' ';
  d.description =
      "The following are multiple choice questions (with answers) about " + spaced + ".\n\n";
  d.subset = subject;
  return d;
}

namespace {

// The original release: a folder of <subject>_<split>.csv files (question, A, B, C, D, answer
// letter; no header), subjects in file-name order.
std::vector<Doc> LoadMmluCsvFolder(const std::string& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".csv") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  if (files.empty())
    Fail(dir, ": no MMLU .csv files (the original release's data/test or data/dev)");
  std::vector<Doc> docs;
  for (const auto& f : files) {
    std::string subject = f.stem().string();
    const size_t us = subject.rfind('_');
    if (us != std::string::npos) subject.resize(us);  // drop "_test" / "_dev" / "_val"
    const std::string path = f.string();
    for (const auto& rec : ParseCsv(ReadTextFile(path), path)) {
      const std::string where = path + ":" + std::to_string(rec.line);
      if (rec.fields.size() != 6)
        Fail(where, ": an MMLU row has 6 fields (question, A, B, C, D, answer), got ",
             rec.fields.size());
      const json row = {{"question", rec.fields[0]},
                        {"subject", subject},
                        {"choices", {rec.fields[1], rec.fields[2], rec.fields[3], rec.fields[4]}},
                        {"answer", rec.fields[5]}};
      docs.push_back(MmluDoc(row, static_cast<int>(docs.size()), where));
    }
  }
  return docs;
}

}  // namespace

std::vector<Doc> LoadMmlu(const std::string& path) {
  if (fs::is_directory(path)) return LoadMmluCsvFolder(path);
  std::vector<std::string> where;
  const auto rows = ReadRows(path, &where);
  std::vector<Doc> docs;
  docs.reserve(rows.size());
  for (size_t i = 0; i < rows.size(); ++i)
    docs.push_back(MmluDoc(rows[i], static_cast<int>(i), where[i]));
  return docs;
}

}  // namespace elm::eval
