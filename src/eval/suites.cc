#include "eval/suites.h"

#include <cmath>
#include <cstdio>

#include "base/error.h"
#include "text/py_text.h"

namespace elm::eval {
namespace {

const Metric* Find(const EvalReport& report, const SuiteColumn& c) {
  for (const auto& t : report.tasks) {
    if (std::string_view(t.task->name) != c.task) continue;
    for (const auto& m : t.metrics)
      if (m.name == c.metric) return &m;
  }
  return nullptr;
}

std::string FmtScore(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

double Average(const Suite& suite, const EvalReport& report, bool* complete) {
  double sum = 0;
  int n = 0;
  *complete = true;
  for (const auto& c : suite.columns) {
    if (!c.in_average) continue;
    const Metric* m = Find(report, c);
    if (!m) {
      *complete = false;
      continue;
    }
    sum += m->value;
    ++n;
  }
  return n > 0 ? sum / n : std::nan("");
}

}  // namespace

const std::vector<Suite>& AllSuites() {
  // Column metrics: the card does not say acc or acc_norm; elm shows acc_norm for ARC,
  // HellaSwag, PIQA and OpenBookQA, acc for the rest, pct_stereotype for CrowS-Pairs (both
  // acc and acc_norm are in the results JSON; docs/evaluation.md "Suites").
  static const std::vector<Suite> suites = {
      {"zeroshot",
       "Zero-shot (model card; Avg over its 7 columns, RACE and TruthfulQA-mc2 from its command)",
       {{"ARC-c", "arc_challenge", 0, "acc_norm"},
        {"ARC-e", "arc_easy", 0, "acc_norm"},
        {"BoolQ", "boolq", 0, "acc"},
        {"HellaSwag", "hellaswag", 0, "acc_norm"},
        {"PIQA", "piqa", 0, "acc_norm"},
        {"SciQ", "sciq", 0, "acc"},
        {"WinoGrande", "winogrande", 0, "acc"},
        {"RACE", "race", 0, "acc", false},
        {"TruthfulQA", "truthfulqa_mc2", 0, "acc", false}}},
      {"openllm",
       "OpenLLM leaderboard tasks (paper Table 1 / Tab. 3b: the 45.93 average of OpenELM-1.1B)",
       {{"ARC-c", "arc_challenge", 25, "acc_norm"},
        {"HellaSwag", "hellaswag", 10, "acc_norm"},
        {"MMLU", "mmlu", 5, "acc"},
        {"TruthfulQA", "truthfulqa_mc2", 0, "acc"},
        {"WinoGrande", "winogrande", 5, "acc"}}},
      {"llm360",
       "8-task table (model card; adds CrowS-Pairs 25-shot, PIQA and RACE 0-shot)",
       {{"ARC-c", "arc_challenge", 25, "acc_norm"},
        {"CrowS", "crows_pairs_english", 25, "pct_stereotype"},
        {"HellaSwag", "hellaswag", 10, "acc_norm"},
        {"MMLU", "mmlu", 5, "acc"},
        {"PIQA", "piqa", 0, "acc_norm"},
        {"RACE", "race", 0, "acc"},
        {"TruthfulQA", "truthfulqa_mc2", 0, "acc"},
        {"WinoGrande", "winogrande", 5, "acc"}}},
      {"peft",
       "PEFT tasks (CoreNet README-peft, zero-shot)",
       {{"boolq", "boolq", 0, "acc"},
        {"piqa", "piqa", 0, "acc_norm"},
        {"siqa", "siqa", 0, "acc"},
        {"hellaswag", "hellaswag", 0, "acc_norm"},
        {"winogrande", "winogrande", 0, "acc"},
        {"arc-easy", "arc_easy", 0, "acc_norm"},
        {"arc-challenge", "arc_challenge", 0, "acc_norm"},
        {"obqa", "openbookqa", 0, "acc_norm"}}},
  };
  return suites;
}

const Suite& FindSuite(const std::string& name) {
  std::string known;
  for (const auto& s : AllSuites()) {
    if (name == s.name) return s;
    known += (known.empty() ? "" : ", ") + std::string(s.name);
  }
  Fail("unknown suite \"", name, "\" (known: ", known, ")");
}

std::vector<const TaskInfo*> SuiteTasks(const Suite& suite) {
  std::vector<const TaskInfo*> out;
  for (const auto& c : suite.columns) out.push_back(&FindTask(c.task));
  return out;
}

std::map<std::string, int> SuiteShots(const Suite& suite) {
  std::map<std::string, int> out;
  for (const auto& c : suite.columns) out[c.task] = c.shots;
  return out;
}

std::string SuiteTable(const Suite& suite, const EvalReport& report,
                       const std::string& model_name) {
  std::vector<std::string> head = {"Model"}, row = {model_name};
  for (const auto& c : suite.columns) {
    head.push_back(std::string(c.header) +
                   (c.shots > 0 ? " (" + std::to_string(c.shots) + ")" : ""));
    const Metric* m = Find(report, c);
    if (!m) {
      row.push_back("n/a");
    } else {
      row.push_back(FmtScore("%.2f", 100 * m->value) +
                    (std::isfinite(m->std_err) ? FmtScore(" ± %.2f", 100 * m->std_err) : ""));
    }
  }
  bool complete = true;
  const double avg = Average(suite, report, &complete);
  head.push_back("Avg");
  row.push_back(std::isfinite(avg) ? FmtScore("%.2f", 100 * avg) + (complete ? "" : " (partial)")
                                   : "n/a");
  std::string out = std::string(suite.title) + "\n\n";
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s = "|";
    for (size_t i = 0; i < cells.size(); ++i) {
      const size_t w = std::max(text::CodePointCount(head[i]), text::CodePointCount(row[i]));
      s += " " + cells[i] + std::string(w - text::CodePointCount(cells[i]), ' ') + " |";
    }
    return s + "\n";
  };
  out += line(head);
  out += "|";
  for (size_t i = 0; i < head.size(); ++i)
    out += std::string(std::max(text::CodePointCount(head[i]), text::CodePointCount(row[i])) + 2,
                       '-') +
           "|";
  out += "\n" + line(row);
  return out;
}

nlohmann::json SuiteJson(const Suite& suite, const EvalReport& report) {
  nlohmann::json cols = nlohmann::json::array();
  for (const auto& c : suite.columns) {
    const Metric* m = Find(report, c);
    nlohmann::json j = {{"header", c.header},
                        {"task", c.task},
                        {"n-shot", c.shots},
                        {"metric", c.metric},
                        {"in_average", c.in_average}};
    j["value"] = m ? nlohmann::json(m->value) : nlohmann::json(nullptr);
    j["stderr"] =
        m && std::isfinite(m->std_err) ? nlohmann::json(m->std_err) : nlohmann::json(nullptr);
    cols.push_back(std::move(j));
  }
  bool complete = true;
  const double avg = Average(suite, report, &complete);
  return {{"name", suite.name},
          {"title", suite.title},
          {"columns", cols},
          {"average", std::isfinite(avg) ? nlohmann::json(avg) : nlohmann::json(nullptr)},
          {"average_complete", complete}};
}

}  // namespace elm::eval
