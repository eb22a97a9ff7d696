// elm eval / elm perplexity: the paper's zero-shot tasks with lm-evaluation-harness semantics,
// and rolling-window perplexity of a text file (docs/evaluation.md).
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <string>

#include "base/error.h"
#include "base/mmap_file.h"
#include "cli_util.h"
#include "commands.h"
#include "eval/evaluator.h"
#include "eval/perplexity.h"
#include "eval/progress.h"
#include "eval/report.h"
#include "eval/suites.h"
#include "io/model_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace elm::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

struct ModelOpts {
  std::string model, tokenizer;
  int context = 0, threads = 0;
  bool no_bos = false;
  bool exact = false;
};

void AddModelFlags(CLI::App* cmd, ModelOpts& o) {
  AddModelOption(cmd, o.model)->required();
  AddThreadsOption(cmd, o.threads);
  cmd->add_option("--tokenizer", o.tokenizer,
                  "tokenizer.json to use (default: the model folder's, else the built-in Llama-2)");
  AddContextOption(cmd, o.context,
                   "lm-eval's max_length: longer inputs are truncated on the left (default: the "
                   "model's max_context_length)");
  cmd->add_flag("--no-bos", o.no_bos,
                "Do not prepend BOS (lm-eval add_bos_token=False; the OpenELM recipe uses True)");
  cmd->add_flag("--exact", o.exact, kExactHelp);
}

// Threads, then the model, then the check of --context against its trained length.
std::shared_ptr<const Model> LoadModel(const ModelOpts& o) {
  SetThreads(o.threads);
  LoadOptions lo;
  lo.exact = o.exact;
  auto model = Model::Load(o.model, lo);
  WarnIfBeyondTrainedContext(o.context, model->config().max_context);
  return model;
}

Tokenizer LoadCheckedTokenizer(const ModelOpts& o, const Model& model) {
  Tokenizer tok = LoadTokenizerFor(o.model, o.tokenizer);
  if (tok.vocab_size() > model.config().vocab_size)
    Fail("the tokenizer has ", tok.vocab_size(), " tokens but the model's vocabulary has ",
         model.config().vocab_size, "; pass a matching --tokenizer");
  return tok;
}

json ConfigJson(const ModelOpts& o, const eval::LoglikelihoodScorer& scorer) {
  return {{"model", o.model},
          {"tokenizer", o.tokenizer.empty() ? "default for the model folder" : o.tokenizer},
          {"weights_dtype", scorer.model().weights_dtype()},
          {"max_length", scorer.max_length()},
          {"add_bos_token", !o.no_bos},
          {"exact", o.exact},
          {"harness", "lm-evaluation-harness dc90fec semantics (HFLM)"}};
}

void WriteJson(const std::string& path, const json& j) {
  const std::string text = j.dump(1) + "\n";
  WriteFileAtomic(path, text.data(), text.size());
}

// The model's folder (or hub) name, for the suite table's Model column.
std::string ModelName(std::string model) {
  while (model.size() > 1 && model.back() == '/') model.pop_back();
  return fs::path(model).filename().string();
}

// "TASK=FILE" values of --data / --fewshot-data, checked against the known tasks.
std::map<std::string, std::string> TaskFiles(const std::vector<std::string>& values,
                                             const char* flag) {
  std::map<std::string, std::string> out;
  for (const auto& v : values) {
    const size_t eq = v.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == v.size())
      Fail(flag, " ", v, ": expected TASK=FILE");
    const std::string task = v.substr(0, eq);
    eval::FindTask(task);
    if (!out.emplace(task, v.substr(eq + 1)).second) Fail(flag, ": task ", task, " given twice");
  }
  return out;
}

void RegisterEval(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "eval",
      "Zero- and few-shot accuracy on the OpenELM paper's tasks (lm-evaluation-harness semantics)");
  struct Opts : ModelOpts {
    std::string tasks, suite, output, output_requests, data_dir, sciq;
    std::vector<std::string> data_files, fewshot_files;
    int limit = 0, num_fewshot = 0;
    int batch_tokens = eval::kDefaultBatchTokens;
    bool no_prefix_cache = false;
    bool no_batch_choices = false;
  };
  auto o = std::make_shared<Opts>();
  AddModelFlags(cmd, *o);
  std::string names;
  for (const auto& t : eval::AllTasks()) names += (names.empty() ? "" : ",") + std::string(t.name);
  std::string suites;
  for (const auto& s : eval::AllSuites())
    suites += (suites.empty() ? "" : ", ") + std::string(s.name);
  auto* tasks_opt =
      cmd->add_option("--tasks", o->tasks, "Comma-separated tasks, or \"all\": " + names);
  auto* suite_opt = cmd->add_option(
      "--suite", o->suite,
      "A table of the model card with its tasks and shots, printed in the card's layout: " +
          suites);
  tasks_opt->excludes(suite_opt);
  suite_opt->excludes(tasks_opt);
  cmd->add_option("--limit", o->limit, "Score only the first N docs of each task (0 = all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--output,-o", o->output, "Write the results (metrics and per-doc) as JSON");
  cmd->add_option("--output-requests", o->output_requests,
                  "Write every scored request (strings, token ids, log-probs) as JSON lines");
  cmd->add_option("--data-dir", o->data_dir,
                  "Folder with the eval sets (default: $ELM_EVAL_DATA_DIR, else elm's data/eval)");
  cmd->add_option("--sciq", o->sciq,
                  "SciQ test set: allenai/sciq's test.json or JSON lines with support, question, "
                  "distractor1-3, correct_answer");
  cmd->add_option("--num-fewshot", o->num_fewshot,
                  "Few-shot examples per prompt, drawn as lm-eval does (default 0)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--data", o->data_files,
                  "TASK=FILE: read TASK's scored split from FILE (repeatable)");
  cmd->add_option("--fewshot-data", o->fewshot_files,
                  "TASK=FILE: read TASK's few-shot split from FILE (repeatable)");
  cmd->add_flag("--no-prefix-cache", o->no_prefix_cache,
                "Score every request with its own full forward, like lm-eval's HFLM (slower; "
                "for comparison)");
  cmd->add_flag("--no-batch-choices", o->no_batch_choices,
                "Score a document's choices one forward each after their shared prefix, not as "
                "branches of one forward (slower; for comparison)");
  cmd->add_option("--batch-tokens", o->batch_tokens,
                  "Rows per forward when batching several documents' requests together (0 = one "
                  "document at a time; default " +
                      std::to_string(eval::kDefaultBatchTokens) +
                      "; off with --no-prefix-cache or --no-batch-choices)")
      ->check(CLI::NonNegativeNumber);
  cmd->callback([o, num_fewshot_opt = cmd->get_option("--num-fewshot")] {
    if (o->tasks.empty() && o->suite.empty()) Fail("eval: give --tasks or --suite");
    const eval::Suite* suite = o->suite.empty() ? nullptr : &eval::FindSuite(o->suite);
    if (suite && num_fewshot_opt->count() > 0)
      Fail("--num-fewshot does not combine with --suite (the suite sets each task's shots)");
    const auto tasks = suite ? eval::SuiteTasks(*suite) : eval::ParseTaskList(o->tasks);
    eval::EvalOptions opt;
    if (suite) opt.task_fewshot = eval::SuiteShots(*suite);
    opt.limit = o->limit;
    opt.add_bos = !o->no_bos;
    opt.data.data_dir = eval::ResolveDataDir(o->data_dir);
    opt.data.sciq_file = o->sciq;
    opt.num_fewshot = o->num_fewshot;
    opt.data.files = TaskFiles(o->data_files, "--data");
    opt.data.fewshot_files = TaskFiles(o->fewshot_files, "--fewshot-data");
    // A task named on the command line without its data is an error before the model loads;
    // "all" skips the tasks whose data is not shipped (SciQ) with a note (docs/evaluation.md).
    if (suite || o->tasks != "all")
      for (const eval::TaskInfo* t : tasks)
        if (eval::TaskDataPath(*t, opt.data).empty()) Fail(eval::MissingDataError(*t, opt.data));
    eval::CheckFewshotData(tasks, opt);
    auto model = LoadModel(*o);
    const Tokenizer tok = LoadCheckedTokenizer(*o, *model);
    eval::LoglikelihoodScorer scorer(model, o->context);
    scorer.set_prefix_reuse(!o->no_prefix_cache);
    scorer.set_branches(!o->no_batch_choices);
    const bool batched = o->batch_tokens > 0 && !o->no_prefix_cache && !o->no_batch_choices;
    std::unique_ptr<eval::LoglikelihoodBatcher> batcher;
    if (batched)
      batcher = std::make_unique<eval::LoglikelihoodBatcher>(model, o->context, o->batch_tokens);

    eval::ProgressBar bar;
    std::string requests;
    eval::EvalCallbacks cb;
    cb.progress = [&](const eval::TaskInfo& t, int done, int total, int64_t n_requests) {
      if (done == 0) bar.Start(t.name, total, "req/s");
      bar.Update(done, n_requests);
      if (done == total) bar.Finish();
    };
    cb.skipped = [](const std::string& msg) { std::fprintf(stderr, "%s\n", msg.c_str()); };
    cb.note = cb.skipped;
    if (!o->output_requests.empty())
      cb.on_request = [&](const eval::RequestRecord& r) {
        requests += eval::RequestJson(r).dump() + "\n";
      };
    const eval::EvalReport report = eval::RunEval(scorer, tok, tasks, opt, cb, batcher.get());

    std::printf("%s", eval::ResultsTable(report).c_str());
    if (suite) std::printf("\n%s", eval::SuiteTable(*suite, report, ModelName(o->model)).c_str());
    std::fprintf(stderr, "%lld requests in %.1f s (%.2f requests/s), max_length %d\n",
                 static_cast<long long>(report.n_requests), report.seconds,
                 report.seconds > 0 ? static_cast<double>(report.n_requests) / report.seconds : 0.0,
                 scorer.max_length());
    json config = ConfigJson(*o, scorer);
    config["tasks"] = suite ? "" : o->tasks;
    if (suite) config["suite"] = o->suite;
    config["limit"] = o->limit;
    config["num_fewshot"] = o->num_fewshot;
    config["data_dir"] = opt.data.data_dir;
    config["prefix_cache"] = !o->no_prefix_cache;
    config["batch_choices"] = !o->no_prefix_cache && !o->no_batch_choices;
    config["batch_tokens"] = batched ? o->batch_tokens : 0;
    if (!o->output.empty()) {
      json j = eval::ResultsJson(report, config);
      if (suite) j["suite"] = eval::SuiteJson(*suite, report);
      WriteJson(o->output, j);
    }
    if (!o->output_requests.empty())
      WriteFileAtomic(o->output_requests, requests.data(), requests.size());
  });
}

void RegisterPerplexity(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "perplexity", "Token, word and byte perplexity of a text (lm-eval loglikelihood_rolling)");
  struct Opts : ModelOpts {
    std::string file, output;
    int stride = 0;
    bool windows = false;
  };
  auto o = std::make_shared<Opts>();
  AddModelFlags(cmd, *o);
  cmd->add_option("--file,-f", o->file,
                  "Text file, scored as one document (- reads standard input)")
      ->required();
  cmd->add_option("--stride", o->stride,
                  "New tokens predicted per window after the first (default: the context, i.e. "
                  "lm-eval's disjoint windows; smaller gives each prediction more context)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--output,-o", o->output, "Write the metrics as JSON");
  cmd->add_flag("--windows", o->windows, "With --output: include every window's input and nll");
  cmd->callback([o] {
    const std::string text = ReadInputText(o->file);
    auto model = LoadModel(*o);
    const Tokenizer tok = LoadCheckedTokenizer(*o, *model);
    eval::LoglikelihoodScorer scorer(model, o->context);
    eval::PerplexityOptions opt;
    opt.stride = o->stride;
    opt.add_bos = !o->no_bos;
    eval::ProgressBar bar;
    bool started = false;
    const auto r = eval::RollingPerplexity(scorer, tok, text, opt, [&](int done, int total) {
      if (!started) bar.Start("perplexity", total, "windows/s");
      started = true;
      bar.Update(done, done);
    });
    bar.Finish();
    std::printf("%s", eval::PerplexityTable(r).c_str());
    if (!o->output.empty()) {
      json config = ConfigJson(*o, scorer);
      config["file"] = o->file;
      config["stride"] = o->stride > 0 ? o->stride : scorer.max_length();
      WriteJson(o->output, eval::PerplexityJson(r, config, o->windows));
    }
  });
}

}  // namespace

ELM_REGISTER_COMMAND(60, RegisterEval);
ELM_REGISTER_COMMAND(61, RegisterPerplexity);

}  // namespace elm::cli
