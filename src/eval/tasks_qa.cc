// Social IQa and OpenBookQA as lm-eval's siqa/siqa.yaml and openbookqa/openbookqa.yaml at
// dc90fec (docs/evaluation.md "Tasks").
#include <algorithm>

#include "base/error.h"
#include "eval/task_rows.h"
#include "eval/tasks.h"
#include "text/py_text.h"

namespace elm::eval {
using nlohmann::json;
using namespace rows;  // NOLINT: the shared row helpers (task_rows.h)

// "Q: {{context}} {{question}}\nA:", choices answerA-C, target int(label) - 1.
Doc SiqaDoc(const json& row, int index, const std::string& where) {
  const std::string context =
      "Q: " + Str(row, "context", where) + " " + Str(row, "question", where) + "\nA:";
  const int gold = CheckGold(IntLike(row, "label", where) - 1, 3, where, "label - 1");
  return ChoiceDoc(
      context, {Str(row, "answerA", where), Str(row, "answerB", where), Str(row, "answerC", where)},
      gold, index);
}

// doc_to_text question_stem, choices choices.text, target choices.label.index(answerKey.lstrip()).
// The shipped copy (llm-foundry's, data/eval/README.md) has rows {"query": question_stem,
// "choices": choices.text, "gold": index}, which give the same document.
Doc OpenbookqaDoc(const json& row, int index, const std::string& where) {
  if (Has(row, "query")) {
    auto choices = StrList(row, "choices", where);
    const int gold = Gold(row, choices.size(), where);
    return ChoiceDoc(Str(row, "query", where), std::move(choices), gold, index);
  }
  const json& ch = Field(row, "choices", where);
  auto choices = StrList(ch, "text", where + " (choices)");
  const auto labels = StrList(ch, "label", where + " (choices)");
  if (labels.size() != choices.size())
    Fail(where, ": choices.text and choices.label differ in length");
  const std::string key(text::PyLStrip(Str(row, "answerKey", where)));
  const auto it = std::find(labels.begin(), labels.end(), key);
  if (it == labels.end()) Fail(where, ": answerKey \"", key, "\" is not one of choices.label");
  return ChoiceDoc(Str(row, "question_stem", where), std::move(choices),
                   static_cast<int>(it - labels.begin()), index);
}

}  // namespace elm::eval
