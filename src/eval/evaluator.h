// Runs tasks end to end: docs -> encoded requests -> scores -> per-doc outcomes -> task
// metrics. The choices of one doc are scored back to back, so they share the prefill of their
// common context in the scorer's KV cache.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "eval/loglikelihood.h"
#include "eval/metrics.h"
#include "eval/tasks.h"
#include "tokenizer/tokenizer.h"

namespace elm::eval {

struct DocResult {
  int doc_index = 0;
  int gold = -1;
  std::vector<double> lls;      // per request, in choice order
  std::vector<char> is_greedy;  // per request (char: vector<bool> has no data())
  std::vector<int> continuation_tokens;
  std::vector<double> choice_chars;  // multiple choice: len(choice) in characters
  ChoiceOutcome outcome;             // multiple choice only
};

// One scored request, for --output-requests (the conformance requests.jsonl format).
struct RequestRecord {
  const TaskInfo* task;
  int doc_index, choice_index, gold;
  const EncodedRequest* encoded;
  const RequestScore* score;
};
using RequestSink = std::function<void(const RequestRecord&)>;

// Scores every request of `doc` (after _encode_pair with add_bos) and its per-doc metrics.
DocResult ScoreDoc(LoglikelihoodScorer& scorer, const Tokenizer& tok, const TaskInfo& task,
                   const Doc& doc, bool add_bos, const RequestSink& sink = {});

// Task-level metrics over the docs: acc (+ acc_norm where the task reports it) with
// lm-eval's mean_stderr; LAMBADA: acc (= mean is_greedy) and perplexity.
std::vector<Metric> TaskMetrics(const TaskInfo& task, std::span<const DocResult> docs);

struct TaskResult {
  const TaskInfo* task = nullptr;
  std::string data_file;
  std::vector<DocResult> docs;
  std::vector<Metric> metrics;
  int64_t n_requests = 0;
  int64_t tokens_forwarded = 0, tokens_reused = 0;
  double seconds = 0;
};

struct EvalOptions {
  int limit = 0;        // first N docs of each task (lm-eval --limit); 0 = all
  bool add_bos = true;  // lm-eval add_bos_token (the OpenELM recipe)
  DataLocations data;
};

struct EvalReport {
  std::vector<TaskResult> tasks;
  std::vector<std::string> skipped;  // one message per task without data
  double seconds = 0;
  int64_t n_requests = 0;
};

struct EvalCallbacks {
  // Called once per task before scoring (total docs) and after each doc.
  std::function<void(const TaskInfo&, int docs_done, int docs_total, int64_t requests_done)>
      progress;
  // Called when a task is skipped for lack of data (the message says why and what to do).
  std::function<void(const std::string&)> skipped;
  RequestSink on_request;
};

EvalReport RunEval(LoglikelihoodScorer& scorer, const Tokenizer& tok,
                   std::span<const TaskInfo* const> tasks, const EvalOptions& opt,
                   const EvalCallbacks& cb = {});

}  // namespace elm::eval
