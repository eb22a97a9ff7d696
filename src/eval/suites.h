// The evaluation tables of the OpenELM model card and CoreNet's PEFT README as named suites
// (`elm eval --suite`; docs/evaluation.md "Suites"): which tasks at which shot counts, which
// metric each column shows, and the table printed in the card's layout (values in percent, with
// their standard errors, and the average of the card's columns).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eval/evaluator.h"

namespace elm::eval {

struct SuiteColumn {
  const char* header;  // the card's column title
  const char* task;
  int shots;
  const char* metric;      // the metric shown ("acc", "acc_norm", "pct_stereotype")
  bool in_average = true;  // counted in the card's "Avg"
};

struct Suite {
  const char* name;   // zeroshot, openllm, llm360, peft
  const char* title;  // what the table is
  std::vector<SuiteColumn> columns;
};

const std::vector<Suite>& AllSuites();
// Throws elm::Error listing the known suites.
const Suite& FindSuite(const std::string& name);
// The suite's tasks, in column order.
std::vector<const TaskInfo*> SuiteTasks(const Suite& suite);
// Task name -> shots, for EvalOptions::task_fewshot.
std::map<std::string, int> SuiteShots(const Suite& suite);

// The card's layout: | Model | <column> ... | Avg |, one row for `model_name` with each value
// in percent and "± stderr"; a column without a result shows "n/a".
std::string SuiteTable(const Suite& suite, const EvalReport& report, const std::string& model_name);
// {"name", "title", "columns": [{header, task, n-shot, metric, value, stderr}], "average"}.
nlohmann::json SuiteJson(const Suite& suite, const EvalReport& report);

}  // namespace elm::eval
