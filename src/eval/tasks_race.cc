// RACE as lm-eval's race/race.yaml + preprocess_race.py at dc90fec: one doc per article, every
// question but the last written out with its answer, the last one scored (docs/evaluation.md
// "RACE").
#include "base/error.h"
#include "eval/py_literal.h"
#include "eval/task_rows.h"
#include "eval/tasks.h"

namespace elm::eval {
using nlohmann::json;
using namespace rows;  // NOLINT: the shared row helpers (task_rows.h)

namespace {

int AnswerIndex(const json& problem, const std::string& where) {
  const std::string a = Str(problem, "answer", where);
  if (a.size() != 1 || a[0] < 'A' || a[0] > 'D') Fail(where, ": answer must be A, B, C or D");
  return a[0] - 'A';
}

std::vector<std::string> Options(const json& problem, const std::string& where) {
  auto o = StrList(problem, "options", where);
  if (o.size() < 4) Fail(where, ": a RACE problem needs 4 options, got ", o.size());
  o.resize(4);
  return o;
}

}  // namespace

// Hugging Face EleutherAI/race rows: article and problems, the repr of a list of
// {answer, options, question} (a JSON array is accepted too).
Doc RaceDoc(const json& row, int index, const std::string& where) {
  const std::string article = Str(row, "article", where);
  const json& p = Field(row, "problems", where);
  const json problems =
      p.is_string() ? ParsePyLiteral(p.get<std::string>(), where + " (problems)") : p;
  if (!problems.is_array() || problems.empty())
    Fail(where, ": field \"problems\" must be a non-empty list");
  std::string text = "Article: " + article + "\n\n";
  for (size_t k = 0; k + 1 < problems.size(); ++k) {
    const std::string w = where + " (problem " + std::to_string(k) + ")";
    const std::string q = Str(problems[k], "question", w);
    const std::string answer =
        Options(problems[k], w)[static_cast<size_t>(AnswerIndex(problems[k], w))];
    if (std::string_view(q).ends_with("  _  .")) {
      text += q.substr(q.size() - 5) + answer + "\n";
    } else {
      text += "Question: " + q + "\n" + "Answer: " + answer + "\n";
    }
  }
  const json& last = problems.back();
  const std::string w = where + " (last problem)";
  text += Str(last, "question", w);
  return ChoiceDoc(text, Options(last, w), AnswerIndex(last, w), index);
}

}  // namespace elm::eval
