#include "eval/report.h"

#include <cmath>
#include <cstdio>

#include "text/py_text.h"

namespace elm::eval {
namespace {

using nlohmann::json;

// JSON has no NaN: undefined values (a stderr over one doc) become null.
json Num(double v) {
  return std::isfinite(v) ? json(v) : json(nullptr);
}

std::string Fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

std::string ResultsTable(const EvalReport& report) {
  const std::vector<std::string> head = {"task",   "split", "docs",  "shots",
                                         "metric", "value", "stderr"};
  std::vector<std::vector<std::string>> rows;
  auto add = [&](const std::string& name, const std::string& split, size_t docs, int shots,
                 const std::vector<Metric>& metrics) {
    bool first = true;
    for (const auto& m : metrics) {
      const bool ppl = m.name == "perplexity";
      rows.push_back(
          {first ? name : "", first ? split : "", first ? std::to_string(docs) : "",
           first ? std::to_string(shots) : "", m.name, Fmt(ppl ? "%.4g" : "%.4f", m.value),
           std::isfinite(m.std_err) ? Fmt(ppl ? "± %.4g" : "± %.4f", m.std_err) : "n/a"});
      first = false;
    }
  };
  for (const auto& t : report.tasks) {
    add(t.task->name, t.task->split, t.docs.size(), t.num_fewshot, t.metrics);
    // Groups then subjects, as lm-eval lists them (" - stem", "  - abstract_algebra").
    for (const auto& s : t.subsets)
      add((s.group.empty() ? " - " : "  - ") + s.name, "", static_cast<size_t>(s.n_docs),
          t.num_fewshot, s.metrics);
  }
  // Widths in characters ("±" is two bytes but one column).
  std::vector<size_t> w(head.size());
  for (size_t c = 0; c < head.size(); ++c) {
    w[c] = head[c].size();
    for (const auto& r : rows) w[c] = std::max(w[c], text::CodePointCount(r[c]));
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s = "|";
    for (size_t c = 0; c < cells.size(); ++c)
      s += " " + cells[c] + std::string(w[c] - text::CodePointCount(cells[c]), ' ') + " |";
    return s + "\n";
  };
  std::string out = line(head);
  out += "|";
  for (size_t c = 0; c < head.size(); ++c) out += std::string(w[c] + 2, '-') + "|";
  out += "\n";
  for (const auto& r : rows) out += line(r);
  return out;
}

namespace {

const char* LmEvalVersion(const TaskInfo& task) {
  // metadata.version of each task's YAML at dc90fec.
  const std::string_view n = task.name;
  if (n == "boolq" || n == "truthfulqa_mc2" || n == "race") return "2.0";
  if (n == "mmlu" || n == "siqa") return "0.0";
  return "1.0";
}

json TaskConfigJson(const TaskResult& t) {
  const TaskInfo& k = *t.task;
  json c = {{"task", k.lm_eval_name ? k.lm_eval_name : k.name},
            {"test_split", k.split},
            {"num_fewshot", t.num_fewshot},
            {"fewshot_delimiter", "\n\n"},
            {"target_delimiter", k.kind == TaskKind::kPairBias ? "" : " "},
            {"output_type", k.kind == TaskKind::kLastWord ? "loglikelihood" : "multiple_choice"},
            {"data_file", t.data_file}};
  if (t.num_fewshot > 0) {
    c["fewshot_split"] = *k.fewshot_split ? k.fewshot_split : k.split;
    c["fewshot_config"] = {
        {"sampler", k.sampling == FewshotSampling::kFirstN ? "first_n" : "default"}};
    c["fewshot_file"] = t.fewshot_file.empty() ? t.data_file : t.fewshot_file;
  }
  return c;
}

}  // namespace

json ResultsJson(const EvalReport& report, const json& config) {
  json results = json::object(), samples = json::object(), groups = json::object(),
       versions = json::object(), n_shot = json::object(), configs = json::object();
  auto metric_keys = [](json& r, const std::vector<Metric>& metrics) {
    for (const auto& m : metrics) {
      r[m.name + ",none"] = Num(m.value);
      r[m.name + "_stderr,none"] = Num(m.std_err);
    }
  };
  for (const auto& t : report.tasks) {
    // lm-evaluation-harness 0.4's keys: "<metric>,<filter>" with the filter "none".
    json r = json::object();
    r["alias"] = t.task->name;
    metric_keys(r, t.metrics);
    versions[t.task->name] = LmEvalVersion(*t.task);
    n_shot[t.task->name] = t.num_fewshot;
    configs[t.task->name] = TaskConfigJson(t);
    // MMLU: each category and subject under lm-eval's names (mmlu_stem, mmlu_anatomy), the
    // group rows also in "groups".
    for (const auto& s : t.subsets) {
      json sr = {{"alias", (s.group.empty() ? " - " : "  - ") + s.name}};
      metric_keys(sr, s.metrics);
      sr["n_docs"] = s.n_docs;
      const std::string key = std::string(t.task->name) + "_" + s.name;
      results[key] = sr;
      if (s.group.empty()) groups[key] = sr;
      versions[key] = LmEvalVersion(*t.task);
      n_shot[key] = t.num_fewshot;
    }
    if (!t.subsets.empty()) {
      json g = {{"alias", t.task->name}};
      metric_keys(g, t.metrics);
      groups[t.task->name] = g;
    }
    r["split"] = t.task->split;
    r["n_docs"] = t.docs.size();
    r["n_requests"] = t.n_requests;
    r["data_file"] = t.data_file;
    r["seconds"] = t.seconds;
    r["requests_per_s"] = t.seconds > 0 ? static_cast<double>(t.n_requests) / t.seconds : 0.0;
    r["tokens_forwarded"] = t.tokens_forwarded;
    r["tokens_reused_from_cache"] = t.tokens_reused;
    results[t.task->name] = r;
    json docs = json::array();
    for (const auto& d : t.docs) {
      json j = {{"doc_index", d.doc_index}, {"lls", d.lls}};
      if (!d.subset.empty()) j["subset"] = d.subset;
      if (t.task->kind == TaskKind::kMc2) {
        j["acc"] = d.mc2;
      } else if (t.task->kind == TaskKind::kPairBias) {
        j["likelihood_diff"] = d.likelihood_diff;
        j["pct_stereotype"] = d.pct_stereotype;
      } else if (t.task->kind == TaskKind::kMultipleChoice) {
        j["gold"] = d.gold;
        j["pred"] = d.outcome.pred;
        j["acc"] = d.outcome.acc;
        if (t.task->acc_norm) {
          j["choice_char_lens"] = d.choice_chars;
          j["pred_norm"] = d.outcome.pred_norm;
          j["acc_norm"] = d.outcome.acc_norm;
        }
      } else {
        j["is_greedy"] = d.is_greedy.at(0) != 0;
        j["acc"] = d.is_greedy.at(0) ? 1.0 : 0.0;
        j["n_continuation_tokens"] = d.continuation_tokens.at(0);
      }
      docs.push_back(std::move(j));
    }
    samples[t.task->name] = std::move(docs);
  }
  return {{"results", results},
          {"groups", groups},
          {"versions", versions},
          {"n-shot", n_shot},
          {"configs", configs},
          {"skipped", report.skipped},
          {"config", config},
          {"timing",
           {{"seconds", report.seconds},
            {"requests", report.n_requests},
            {"requests_per_s",
             report.seconds > 0 ? static_cast<double>(report.n_requests) / report.seconds : 0.0}}},
          {"samples", samples}};
}

json RequestJson(const RequestRecord& r) {
  return {{"task", r.task->name},
          {"doc_index", r.doc_index},
          {"choice_index", r.choice_index},
          {"gold", r.gold < 0 ? 0 : r.gold},
          {"context", r.encoded->context},
          {"continuation", r.encoded->continuation},
          {"context_ids", r.encoded->context_ids},
          {"continuation_ids", r.encoded->continuation_ids},
          {"loglikelihood", r.score->loglikelihood},
          {"is_greedy", r.score->is_greedy},
          {"token_logprobs", r.score->token_logprobs}};
}

json PerplexityJson(const PerplexityResult& r, const json& config, bool include_windows) {
  json j = {{"config", config},
            {"num_bytes", r.num_bytes},
            {"num_words_lm_eval", r.num_words},
            {"text_tokens", r.text_tokens},
            {"scored_tokens", r.scored_tokens},
            {"num_windows", r.windows.size()},
            {"nll_sum", r.nll_sum},
            {"loglikelihood_sum", -r.nll_sum},
            {"token_perplexity", Num(r.token_perplexity())},
            {"word_perplexity", Num(r.word_perplexity())},
            {"byte_perplexity", Num(r.byte_perplexity())},
            {"bits_per_byte", Num(r.bits_per_byte())}};
  if (include_windows) {
    json w = json::array();
    for (const auto& win : r.windows)
      w.push_back({{"input_ids", win.input_ids}, {"n_scored", win.n_scored}, {"nll", win.nll}});
    j["windows"] = std::move(w);
  }
  return j;
}

std::string PerplexityTable(const PerplexityResult& r) {
  std::string s;
  s += "tokens scored     " + std::to_string(r.scored_tokens) + " in " +
       std::to_string(r.windows.size()) + " windows (text: " + std::to_string(r.text_tokens) +
       " tokens, " + std::to_string(r.num_words) + " words, " + std::to_string(r.num_bytes) +
       " bytes)\n";
  s += "nll sum           " + Fmt("%.4f", r.nll_sum) + "\n";
  s += "token perplexity  " + Fmt("%.6g", r.token_perplexity()) + "\n";
  s += "word perplexity   " + Fmt("%.6g", r.word_perplexity()) + "\n";
  s += "byte perplexity   " + Fmt("%.6g", r.byte_perplexity()) + "\n";
  s += "bits per byte     " + Fmt("%.6g", r.bits_per_byte()) + "\n";
  return s;
}

}  // namespace elm::eval
