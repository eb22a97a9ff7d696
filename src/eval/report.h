// What `elm eval` and `elm perplexity` write: the results table for the terminal, the results
// JSON (per-task metrics and per-doc samples), one JSON line per scored request (the format of
// the conformance requests.jsonl, so runs can be diffed against lm-eval's), and the perplexity
// report.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "eval/evaluator.h"
#include "eval/perplexity.h"

namespace elm::eval {

// A markdown table like lm-eval's: task, split, docs, metric, value, stderr.
std::string ResultsTable(const EvalReport& report);
// {"results": {task: {"alias": task, "<metric>,none": v, "<metric>_stderr,none": e, ...}} (the
//  keys lm-evaluation-harness 0.4 writes), "samples": {task: [per doc]},
//  "skipped": [...], "config": config, "timing": {...}}.
nlohmann::json ResultsJson(const EvalReport& report, const nlohmann::json& config);
nlohmann::json RequestJson(const RequestRecord& r);

nlohmann::json PerplexityJson(const PerplexityResult& r, const nlohmann::json& config,
                              bool include_windows);
std::string PerplexityTable(const PerplexityResult& r);

}  // namespace elm::eval
