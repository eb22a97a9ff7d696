#include "eval/evaluator.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

#include "base/error.h"
#include "eval/fewshot.h"
#include "text/py_text.h"

namespace elm::eval {

namespace {

// A doc's requests after _encode_pair, and their ids as the scorers take them.
struct EncodedDocRequests {
  std::vector<EncodedRequest> encs;
  std::vector<LoglikelihoodScorer::Ids> ids;
};

EncodedDocRequests EncodeDocRequests(const Tokenizer& tok, const TaskInfo& task, const Doc& doc,
                                     bool add_bos) {
  EncodedDocRequests e;
  e.encs.resize(doc.requests.size());
  e.ids.resize(doc.requests.size());
  for (size_t k = 0; k < doc.requests.size(); ++k) {
    try {
      e.encs[k] = EncodePair(tok, doc.requests[k].context, doc.requests[k].continuation, add_bos);
    } catch (const Error& err) {
      Fail(task.name, " doc ", doc.index, " request ", k, ": ", err.what());
    }
    e.ids[k] = {e.encs[k].context_ids, e.encs[k].continuation_ids};
  }
  return e;
}

// The per-doc outcome from its requests' scores.
DocResult FinishDoc(const TaskInfo& task, const Doc& doc, const EncodedDocRequests& e,
                    const std::vector<RequestScore>& scores, const RequestSink& sink) {
  DocResult d;
  d.doc_index = doc.index;
  d.gold = doc.gold;
  d.subset = doc.subset;
  const std::vector<EncodedRequest>& encs = e.encs;
  for (size_t k = 0; k < doc.requests.size(); ++k) {
    const RequestScore& s = scores[k];
    d.lls.push_back(s.loglikelihood);
    d.is_greedy.push_back(s.is_greedy ? 1 : 0);
    d.continuation_tokens.push_back(static_cast<int>(encs[k].continuation_ids.size()));
    if (sink) sink({&task, doc.index, static_cast<int>(k), doc.gold, &encs[k], &s});
  }
  if (task.kind != TaskKind::kLastWord) {
    // len() in Python counts code points; for WinoGrande these are its options' lengths, which
    // only feed the unreported acc_norm.
    for (const auto& c : doc.choices)
      d.choice_chars.push_back(static_cast<double>(text::CodePointCount(c)));
    d.outcome = ScoreChoices(d.lls, d.choice_chars, doc.gold);
  }
  if (task.kind == TaskKind::kMc2) {
    // process_results_mc2: exp(ll) of the true answers over exp(ll) of all, shifted by the
    // largest ll first (the same ratio, without exp underflowing on long answers).
    const double top = *std::max_element(d.lls.begin(), d.lls.end());
    double p_true = 0, p_all = 0;
    for (size_t i = 0; i < d.lls.size(); ++i) {
      const double p = std::exp(d.lls[i] - top);
      p_all += p;
      if (static_cast<int>(i) < doc.n_true) p_true += p;
    }
    d.mc2 = p_true / p_all;
  }
  if (task.kind == TaskKind::kPairBias) {
    d.likelihood_diff = std::fabs(d.lls.at(0) - d.lls.at(1));
    d.pct_stereotype = d.lls[0] > d.lls[1] ? 1.0 : 0.0;
  }
  return d;
}

}  // namespace

DocResult ScoreDoc(LoglikelihoodScorer& scorer, const Tokenizer& tok, const TaskInfo& task,
                   const Doc& doc, bool add_bos, const RequestSink& sink) {
  const EncodedDocRequests e = EncodeDocRequests(tok, task, doc, add_bos);
  std::vector<RequestScore> scores;
  try {
    scores = scorer.ScoreAll(e.ids);
  } catch (const Error& err) {
    Fail(task.name, " doc ", doc.index, ": ", err.what());
  }
  return FinishDoc(task, doc, e, scores, sink);
}

std::vector<DocResult> ScoreDocsBatched(LoglikelihoodBatcher& batcher, const Tokenizer& tok,
                                        const TaskInfo& task, std::span<const Doc> docs,
                                        bool add_bos, const RequestSink& sink) {
  std::vector<EncodedDocRequests> encoded;
  std::vector<std::vector<LoglikelihoodScorer::Ids>> ids;
  encoded.reserve(docs.size());  // ids point into encoded's token vectors
  const int V = batcher.vocab_size();
  for (const Doc& doc : docs) {
    encoded.push_back(EncodeDocRequests(tok, task, doc, add_bos));
    // The batcher's checks, here, so that an error names the doc.
    for (const auto& r : encoded.back().ids) {
      try {
        CheckedModelInput(r.context, r.continuation, batcher.max_length(), V);
      } catch (const Error& err) {
        Fail(task.name, " doc ", doc.index, ": ", err.what());
      }
    }
    ids.push_back(encoded.back().ids);
  }
  std::vector<std::vector<RequestScore>> scores;
  try {
    scores = batcher.ScoreDocs(ids);
  } catch (const Error& err) {
    Fail(task.name, " docs ", docs.front().index, "-", docs.back().index, ": ", err.what());
  }
  std::vector<DocResult> out;
  for (size_t i = 0; i < docs.size(); ++i)
    out.push_back(FinishDoc(task, docs[i], encoded[i], scores[i], sink));
  return out;
}

std::vector<Metric> TaskMetrics(const TaskInfo& task, std::span<const DocResult> docs) {
  if (task.kind == TaskKind::kMc2) {
    std::vector<double> mc2;
    for (const auto& d : docs) mc2.push_back(d.mc2);
    return {{"acc", Mean(mc2), MeanStderr(mc2)}};
  }
  if (task.kind == TaskKind::kPairBias) {
    std::vector<double> diff, pct;
    for (const auto& d : docs) {
      diff.push_back(d.likelihood_diff);
      pct.push_back(d.pct_stereotype);
    }
    return {{"likelihood_diff", Mean(diff), MeanStderr(diff)},
            {"pct_stereotype", Mean(pct), MeanStderr(pct)}};
  }
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

int ShotsFor(const TaskInfo& task, const EvalOptions& opt) {
  if (task.zero_shot_only) return 0;
  const auto it = opt.task_fewshot.find(task.name);
  return it != opt.task_fewshot.end() ? it->second : opt.num_fewshot;
}

void CheckFewshotData(std::span<const TaskInfo* const> tasks, const EvalOptions& opt) {
  for (const TaskInfo* t : tasks) {
    if (ShotsFor(*t, opt) <= 0) continue;
    const std::string path = TaskDataPath(*t, opt.data);
    if (!path.empty()) FewshotDataPath(*t, opt.data);
  }
}

std::vector<Metric> PooledMetrics(std::span<const SubsetResult> parts) {
  std::vector<Metric> out;
  if (parts.empty()) return out;
  for (size_t m = 0; m < parts[0].metrics.size(); ++m) {
    double weighted = 0, pooled_var = 0, total = 0;
    for (const auto& p : parts) {
      const double n = p.n_docs, se = p.metrics.at(m).std_err;
      weighted += p.metrics.at(m).value * n;
      pooled_var += (n - 1) * se * se * n;
      total += n;
    }
    const double k = static_cast<double>(parts.size());
    out.push_back({parts[0].metrics[m].name, weighted / total,
                   total > k ? std::sqrt(pooled_var / (total - k) / total) : std::nan("")});
  }
  return out;
}

namespace {

// MMLU's breakdown as lm-eval groups it: each subject a task, each category (mmlu_stem, ...)
// a group of subjects, mmlu the group of the categories (the task's own metrics).
void SubsetBreakdown(TaskResult& r) {
  std::map<std::string, std::vector<DocResult>> by_subject;
  for (const auto& d : r.docs) by_subject[d.subset].push_back(d);
  std::map<std::string, std::string> group_of;
  for (const auto& [name, group] : MmluSubjects()) group_of[name] = group;
  std::vector<SubsetResult> subjects;
  for (const auto& [name, docs] : by_subject)
    subjects.push_back(
        {name, group_of[name], static_cast<int>(docs.size()), TaskMetrics(*r.task, docs)});
  std::vector<SubsetResult> groups;
  for (const char* g : {"stem", "other", "social_sciences", "humanities"}) {
    std::vector<SubsetResult> members;
    int n = 0;
    for (const auto& s : subjects)
      if (s.group == g) {
        members.push_back(s);
        n += s.n_docs;
      }
    if (!members.empty()) groups.push_back({g, "", n, PooledMetrics(members)});
  }
  r.metrics = PooledMetrics(groups);
  r.subsets = groups;
  r.subsets.insert(r.subsets.end(), subjects.begin(), subjects.end());
}

}  // namespace

std::vector<Doc> PrepareDocs(const TaskInfo& task, const std::string& path, const EvalOptions& opt,
                             TaskResult* r, const EvalCallbacks& cb) {
  std::vector<Doc> docs = LoadDocs(task, path);
  if (docs.empty()) Fail(task.name, ": ", path, " holds no docs");
  r->num_fewshot = ShotsFor(task, opt);
  const auto asked = opt.task_fewshot.find(task.name);
  if (task.zero_shot_only && cb.note &&
      (asked != opt.task_fewshot.end() ? asked->second : opt.num_fewshot) > 0)
    cb.note(std::string(task.name) +
            ": its lm-eval config fixes num_fewshot to 0; the few-shot setting is ignored");
  std::vector<Doc> pool;
  if (r->num_fewshot > 0) {
    r->fewshot_file = FewshotDataPath(task, opt.data);
    pool = r->fewshot_file.empty() ? docs : LoadDocs(task, r->fewshot_file);
  }
  if (opt.limit > 0) {  // lm-eval's --limit, per subtask
    std::map<std::string, int> kept;
    std::erase_if(docs, [&](const Doc& d) { return ++kept[d.subset] > opt.limit; });
  }
  BuildFewshotPrompts(task, docs, pool, r->num_fewshot);
  return docs;
}

EvalReport RunEval(LoglikelihoodScorer& scorer, const Tokenizer& tok,
                   std::span<const TaskInfo* const> tasks, const EvalOptions& opt,
                   const EvalCallbacks& cb, LoglikelihoodBatcher* batcher) {
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
    TaskResult r;
    r.task = task;
    r.data_file = path;
    std::vector<Doc> docs = PrepareDocs(*task, path, opt, &r, cb);
    const auto t0 = Clock::now();
    const auto forwarded = [&] {
      return scorer.tokens_forwarded() + (batcher ? batcher->tokens_forwarded() : 0);
    };
    const auto reused = [&] {
      return scorer.tokens_reused() + (batcher ? batcher->tokens_reused() : 0);
    };
    const int64_t fwd0 = forwarded(), reused0 = reused();
    const int total = static_cast<int>(docs.size());
    if (cb.progress) cb.progress(*task, 0, total, 0);
    for (int i = 0; i < total;) {
      // Batched: kBatchedDocs docs per call (the batcher keeps its forwards full within them).
      const int n = batcher ? std::min(kBatchedDocs, total - i) : 1;
      if (batcher) {
        for (DocResult& d :
             ScoreDocsBatched(*batcher, tok, *task, std::span<const Doc>(docs).subspan(i, n),
                              opt.add_bos, cb.on_request))
          r.docs.push_back(std::move(d));
      } else {
        r.docs.push_back(ScoreDoc(scorer, tok, *task, docs[i], opt.add_bos, cb.on_request));
      }
      for (int k = i; k < i + n; ++k) r.n_requests += static_cast<int64_t>(docs[k].requests.size());
      i += n;
      if (cb.progress) cb.progress(*task, i, total, r.n_requests);
    }
    r.metrics = TaskMetrics(*task, r.docs);
    if (!r.docs.front().subset.empty()) SubsetBreakdown(r);
    r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    r.tokens_forwarded = forwarded() - fwd0;
    r.tokens_reused = reused() - reused0;
    report.n_requests += r.n_requests;
    report.tasks.push_back(std::move(r));
  }
  report.seconds = std::chrono::duration<double>(Clock::now() - t_all).count();
  return report;
}

}  // namespace elm::eval
