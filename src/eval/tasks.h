// The OpenELM paper's zero-shot tasks as lm-evaluation-harness builds them (docs/evaluation.md):
// where each task's data lives, how a row becomes a doc, and
// which loglikelihood requests (context, continuation) a doc asks for. Nothing here touches a
// model or a tokenizer: the strings are exactly lm-eval's, before `_encode_pair`.
#pragma once

#include <map>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace elm::eval {

// One lm-eval `loglikelihood` request: log P(continuation | context).
struct Request {
  std::string context, continuation;
};

struct Doc {
  int index = 0;  // 0-based row in the data file (HellaSwag: the 6-line block)
  std::vector<Request> requests;
  // Multiple choice: the raw choice strings, without the target delimiter; acc_norm divides
  // each log-likelihood by their length in characters. WinoGrande: its options (acc_norm is
  // not reported there). Empty for LAMBADA.
  std::vector<std::string> choices;
  int gold = -1;  // index of the correct request (-1 for LAMBADA)
  // The doc as a few-shot example (lm-eval ContextSampler.get_context): doc_to_text, the
  // target delimiter, then the gold target (for WinoGrande: the gold option's context, " ", the
  // tail after the blank).
  std::string example;
  // lm-eval's `description`, prepended to the whole prompt (MMLU: the subject's sentence).
  std::string description;
  // The lm-eval subtask the doc belongs to (MMLU: the subject); "" for single tasks. Few-shot
  // examples come from the same subset, and --limit counts docs per subset, as lm-eval runs each
  // subtask on its own.
  std::string subset;
  // Multiple-choice tasks whose doc carries its own metric inputs: TruthfulQA-mc2's number of
  // true answers (the first `n_true` choices are true).
  int n_true = 0;
};

enum class TaskKind {
  kMultipleChoice,  // one request per choice (WinoGrande: per option); acc = argmax == gold
  kLastWord,        // LAMBADA: one request; acc = is_greedy, plus perplexity
  kMc2,             // TruthfulQA-mc2: acc = normalized probability mass of the true answers
  kPairBias,        // CrowS-Pairs: likelihood_diff and pct_stereotype of (sent_more, sent_less)
};

// How lm-eval picks few-shot examples (lm_eval/api/samplers.py at dc90fec).
enum class FewshotSampling {
  kRandom,  // ContextSampler: random.Random(1234).sample, one generator per task
  kFirstN,  // FirstNSampler: the first k docs of the few-shot split (MMLU)
};

struct TaskInfo {
  const char* name;
  TaskKind kind;
  bool acc_norm;      // reports acc_norm beside acc
  const char* split;  // the split lm-eval scores, for the results table
  // File names looked for in the data folder, '|'-separated, the first found wins.
  const char* file;
  bool shipped = true;  // false: the user provides the data (a missing file skips the task)
  // Few-shot, from the task's YAML at dc90fec (docs/evaluation.md, "Few-shot"):
  const char* fewshot_split = "train";  // where examples come from; "" = the scored split itself
  const char* fewshot_file = "";        // its file names in the data folder, '|'-separated
  FewshotSampling sampling = FewshotSampling::kRandom;
  // The YAML's fewshot_split equals its test_split (both unset for tasks scored on validation):
  // lm-eval then draws k + 1 examples and drops the evaluated doc.
  bool fewshot_draws_extra = false;
  bool zero_shot_only = false;         // the YAML fixes num_fewshot: 0 (TruthfulQA)
  const char* obtain = "";             // how a user gets the data (for the missing-data message)
  const char* lm_eval_name = nullptr;  // lm-eval's task name where it differs (siqa: social_iqa)
};

// Every supported task, in the paper's table order.
const std::vector<TaskInfo>& AllTasks();
// Throws elm::Error naming `name` and listing the known tasks when it is not one of them.
const TaskInfo& FindTask(const std::string& name);
// Splits "arc_easy, boolq" (commas, spaces allowed); "all" means every task. Throws elm::Error
// for unknown or repeated names.
std::vector<const TaskInfo*> ParseTaskList(const std::string& text);

// Where to read each task's data.
struct DataLocations {
  DataLocations(std::string dir = "", std::string sciq = "")
      : data_dir(std::move(dir)), sciq_file(std::move(sciq)) {}
  std::string data_dir;   // folder with the files of data/eval
  std::string sciq_file;  // explicit SciQ file (--sciq); empty = look in data_dir
  std::map<std::string, std::string> files;          // task -> explicit file (--data TASK=FILE)
  std::map<std::string, std::string> fewshot_files;  // task -> explicit few-shot file
};
// The folder given, else $ELM_EVAL_DATA_DIR, else FindDataDir("eval") ($ELM_DATA_DIR/eval, the
// installed share/elm/eval, or data/eval above the executable). Throws
// elm::Error when none of them exists.
std::string ResolveDataDir(const std::string& explicit_dir);
// The file to read for `task`, or "" when it is optional and absent (SciQ is not shipped).
std::string TaskDataPath(const TaskInfo& task, const DataLocations& where);
// What to tell the user when TaskDataPath returned "".
std::string MissingDataMessage(const TaskInfo& task, const DataLocations& where);
// The error when a task the user named has no data: the files looked for and how to get them.
std::string MissingDataError(const TaskInfo& task, const DataLocations& where);

// The file of `task`'s few-shot split: --fewshot-data's when given, else "" when it is the
// scored file itself (fewshot_split ""), else the first of fewshot_file in the data folder.
// Throws elm::Error naming the files looked for and how to get them when it is missing.
std::string FewshotDataPath(const TaskInfo& task, const DataLocations& where);

// Reads every doc of `task` from `path`. Throws elm::Error naming the file and line of a
// malformed row.
std::vector<Doc> LoadDocs(const TaskInfo& task, const std::string& path);

// Builders for one row (exposed for the unit tests). `where` names the row in error messages.
Doc ArcDoc(const nlohmann::json& row, int index, const std::string& where);
Doc BoolqDoc(const nlohmann::json& row, int index, const std::string& where);
Doc PiqaDoc(const nlohmann::json& row, int index, const std::string& where);
Doc WinograndeDoc(const nlohmann::json& row, int index, const std::string& where);
Doc LambadaDoc(const nlohmann::json& row, int index, const std::string& where);
Doc SciqDoc(const nlohmann::json& row, int index, const std::string& where);
// Hugging Face HellaSwag row (activity_label, ctx_a, ctx_b, endings, label).
Doc HellaswagJsonDoc(const nlohmann::json& row, int index, const std::string& where);
// Python's str.capitalize() on ASCII letters (the first upper, the rest lower); other bytes kept.
std::string PyCapitalize(std::string_view s);
// The task families beyond the paper's zero-shot seven (one file each: tasks_mmlu.cc,
// tasks_truthfulqa.cc, tasks_race.cc, tasks_crows_pairs.cc, tasks_qa.cc).
// MMLU: a JSON-lines file of cais/mmlu rows (question, subject, choices, answer), or a folder of
// the original release's CSV files (<subject>_test.csv / <subject>_dev.csv, no header).
std::vector<Doc> LoadMmlu(const std::string& path);
Doc MmluDoc(const nlohmann::json& row, int index, const std::string& where);
// The 57 subjects with their lm-eval group (stem, other, social_sciences, humanities).
const std::vector<std::pair<std::string, std::string>>& MmluSubjects();
Doc TruthfulqaMc2Doc(const nlohmann::json& row, int index, const std::string& where);
// lm-eval's fixed 6-shot QA primer of truthfulqa_mc1/mc2.
const std::string& TruthfulqaPrimer();
Doc RaceDoc(const nlohmann::json& row, int index, const std::string& where);
// CrowS-Pairs: JSON lines (sent_more, sent_less, ...), or the original release's CSV (.csv).
std::vector<Doc> LoadCrowsPairs(const std::string& path);
Doc CrowsPairsDoc(const nlohmann::json& row, int index, const std::string& where);
Doc SiqaDoc(const nlohmann::json& row, int index, const std::string& where);
Doc OpenbookqaDoc(const nlohmann::json& row, int index, const std::string& where);
// One 6-line block of the klosax HellaSwag text: context, gold label, four endings.
Doc HellaswagDoc(const std::vector<std::string>& lines, int index, const std::string& where);
// lm-eval's hellaswag/utils.py preprocess(): strip, " [title]" -> ". ", drop "[...]", "  " -> " ".
std::string HellaswagPreprocess(std::string_view text);

}  // namespace elm::eval
