// Runs tasks end to end: docs -> encoded requests -> scores -> per-doc outcomes -> task
// metrics. The choices of one doc are scored back to back, so they share the prefill of their
// common context in the scorer's KV cache.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "eval/loglikelihood.h"
#include "eval/loglikelihood_batch.h"
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
  std::string subset;                // the doc's subtask (MMLU subject), "" for single tasks
  double mc2 = 0;                    // TruthfulQA-mc2: probability mass of the true answers
  double likelihood_diff = 0;        // CrowS-Pairs: |ll(sent_more) - ll(sent_less)|
  double pct_stereotype = 0;         // CrowS-Pairs: 1 when ll(sent_more) > ll(sent_less)
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

// ScoreDoc for several docs at once, their requests sharing forwards (docs/evaluation.md
// "Batching across documents"); the same results as ScoreDoc doc by doc within
// docs/numerics.md's tolerance, and `sink` sees the requests in the same order.
std::vector<DocResult> ScoreDocsBatched(LoglikelihoodBatcher& batcher, const Tokenizer& tok,
                                        const TaskInfo& task, std::span<const Doc> docs,
                                        bool add_bos, const RequestSink& sink = {});
// Docs per ScoreDocsBatched call in RunEval (and per progress update).
inline constexpr int kBatchedDocs = 64;

// Task-level metrics over the docs: acc (+ acc_norm where the task reports it) with
// lm-eval's mean_stderr; LAMBADA: acc (= mean is_greedy) and perplexity.
std::vector<Metric> TaskMetrics(const TaskInfo& task, std::span<const DocResult> docs);

// One row of a group breakdown (MMLU: a subject or a category), with lm-eval's group
// aggregation: the mean weighted by docs and the pooled standard error
// (lm_eval/api/metrics.py aggregate_subtask_metrics, pooled_sample_stderr at dc90fec).
struct SubsetResult {
  std::string name;   // "abstract_algebra", or a category "stem"
  std::string group;  // the subject's category; "" for a category row
  int n_docs = 0;
  std::vector<Metric> metrics;
};

// Group metrics of subtasks `parts` (each with the same metric names, n_docs > 0).
std::vector<Metric> PooledMetrics(std::span<const SubsetResult> parts);

struct TaskResult {
  const TaskInfo* task = nullptr;
  int num_fewshot = 0;
  std::string fewshot_file;  // where the examples came from ("" = zero-shot or the scored file)
  // MMLU: the categories in lm-eval's order, then the subjects (each naming its category).
  std::vector<SubsetResult> subsets;
  std::string data_file;
  std::vector<DocResult> docs;
  std::vector<Metric> metrics;
  int64_t n_requests = 0;
  int64_t tokens_forwarded = 0, tokens_reused = 0;
  double seconds = 0;
};

struct EvalOptions {
  int limit = 0;        // first N docs of each task (per subtask: MMLU subject); 0 = all
  bool add_bos = true;  // lm-eval add_bos_token (the OpenELM recipe)
  DataLocations data;
  int num_fewshot = 0;                      // --num-fewshot, for every task
  std::map<std::string, int> task_fewshot;  // per-task shots (a suite), over num_fewshot
};

// The shots `task` runs with under `opt` (0 for a task whose YAML fixes num_fewshot: 0).
int ShotsFor(const TaskInfo& task, const EvalOptions& opt);
// Checks, before the model loads, that every task with shots > 0 finds its few-shot split;
// throws elm::Error saying which file is missing and how to get it.
void CheckFewshotData(std::span<const TaskInfo* const> tasks, const EvalOptions& opt);

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
  // Notes for the user (a few-shot request a task ignores, as lm-eval warns).
  std::function<void(const std::string&)> note;
  RequestSink on_request;
};

// Loads `task`'s docs from `path` and builds their prompts as lm-eval does: --limit per subtask,
// then the description and the few-shot examples (fewshot.h). Sets r->num_fewshot and
// r->fewshot_file; notes go to cb.note.
std::vector<Doc> PrepareDocs(const TaskInfo& task, const std::string& path, const EvalOptions& opt,
                             TaskResult* r, const EvalCallbacks& cb = {});

// With a batcher, documents are scored kBatchedDocs at a time through it (ScoreDocsBatched);
// else one by one through `scorer`.
EvalReport RunEval(LoglikelihoodScorer& scorer, const Tokenizer& tok,
                   std::span<const TaskInfo* const> tasks, const EvalOptions& opt,
                   const EvalCallbacks& cb = {}, LoglikelihoodBatcher* batcher = nullptr);

}  // namespace elm::eval
