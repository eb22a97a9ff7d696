#include "eval/evaluator.h"

#include <chrono>

#include "base/error.h"
#include "text/py_text.h"

namespace elm::eval {

DocResult ScoreDoc(LoglikelihoodScorer& scorer, const Tokenizer& tok, const TaskInfo& task,
                   const Doc& doc, bool add_bos, const RequestSink& sink) {
  DocResult d;
  d.doc_index = doc.index;
  d.gold = doc.gold;
  for (size_t k = 0; k < doc.requests.size(); ++k) {
    const Request& req = doc.requests[k];
    EncodedRequest enc;
    RequestScore s;
    try {
      enc = EncodePair(tok, req.context, req.continuation, add_bos);
      s = scorer.Score(enc.context_ids, enc.continuation_ids);
    } catch (const Error& e) {
      Fail(task.name, " doc ", doc.index, " request ", k, ": ", e.what());
    }
    d.lls.push_back(s.loglikelihood);
    d.is_greedy.push_back(s.is_greedy ? 1 : 0);
    d.continuation_tokens.push_back(static_cast<int>(enc.continuation_ids.size()));
    if (sink) sink({&task, doc.index, static_cast<int>(k), doc.gold, &enc, &s});
  }
  if (task.kind == TaskKind::kMultipleChoice) {
    // len() in Python counts code points; for WinoGrande these are its options' lengths, which
    // only feed the unreported acc_norm.
    for (const auto& c : doc.choices)
      d.choice_chars.push_back(static_cast<double>(text::CodePointCount(c)));
    d.outcome = ScoreChoices(d.lls, d.choice_chars, doc.gold);
  }
  return d;
}

std::vector<Metric> TaskMetrics(const TaskInfo& task, std::span<const DocResult> docs) {
  std::vector<double> acc, acc_norm, lls;
  for (const auto& d : docs) {
    if (task.kind == TaskKind::kMultipleChoice) {
      acc.push_back(d.outcome.acc);
      acc_norm.push_back(d.outcome.acc_norm);
    } else {
      acc.push_back(d.is_greedy.at(0) ? 1.0 : 0.0);
      lls.push_back(d.lls.at(0));
    }
  }
  std::vector<Metric> m;
  m.push_back({"acc", Mean(acc), MeanStderr(acc)});
  if (task.acc_norm) m.push_back({"acc_norm", Mean(acc_norm), MeanStderr(acc_norm)});
  if (task.kind == TaskKind::kLastWord)
    m.push_back({"perplexity", Perplexity(lls), PerplexityStderr(lls)});
  return m;
}

EvalReport RunEval(LoglikelihoodScorer& scorer, const Tokenizer& tok,
                   std::span<const TaskInfo* const> tasks, const EvalOptions& opt,
                   const EvalCallbacks& cb) {
  using Clock = std::chrono::steady_clock;
  const auto t_all = Clock::now();
  EvalReport report;
  for (const TaskInfo* task : tasks) {
    const std::string path = TaskDataPath(*task, opt.data);
    if (path.empty()) {
      report.skipped.push_back(MissingDataMessage(*task, opt.data));
      if (cb.skipped) cb.skipped(report.skipped.back());
      continue;
    }
    std::vector<Doc> docs = LoadDocs(*task, path);
    if (opt.limit > 0 && docs.size() > static_cast<size_t>(opt.limit)) docs.resize(opt.limit);
    if (docs.empty()) Fail(task->name, ": ", path, " holds no docs");

    TaskResult r;
    r.task = task;
    r.data_file = path;
    const auto t0 = Clock::now();
    const int64_t fwd0 = scorer.tokens_forwarded(), reused0 = scorer.tokens_reused();
    const int total = static_cast<int>(docs.size());
    if (cb.progress) cb.progress(*task, 0, total, 0);
    for (int i = 0; i < total; ++i) {
      r.docs.push_back(ScoreDoc(scorer, tok, *task, docs[i], opt.add_bos, cb.on_request));
      r.n_requests += static_cast<int64_t>(docs[i].requests.size());
      if (cb.progress) cb.progress(*task, i + 1, total, r.n_requests);
    }
    r.metrics = TaskMetrics(*task, r.docs);
    r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    r.tokens_forwarded = scorer.tokens_forwarded() - fwd0;
    r.tokens_reused = scorer.tokens_reused() - reused0;
    report.n_requests += r.n_requests;
    report.tasks.push_back(std::move(r));
  }
  report.seconds = std::chrono::duration<double>(Clock::now() - t_all).count();
  return report;
}

}  // namespace elm::eval
