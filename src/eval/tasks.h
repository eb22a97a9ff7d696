// The OpenELM paper's zero-shot tasks as lm-evaluation-harness builds them (docs/evaluation.md):
// where each task's data lives, how a row becomes a doc, and
// which loglikelihood requests (context, continuation) a doc asks for. Nothing here touches a
// model or a tokenizer: the strings are exactly lm-eval's, before `_encode_pair`.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
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
};

enum class TaskKind {
  kMultipleChoice,  // one request per choice (WinoGrande: per option); acc = argmax == gold
  kLastWord,        // LAMBADA: one request; acc = is_greedy, plus perplexity
};

struct TaskInfo {
  const char* name;
  TaskKind kind;
  bool acc_norm;      // reports acc_norm beside acc
  const char* split;  // the split lm-eval scores, for the results table
  const char* file;   // default file name inside the data folder ("" = none shipped)
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
  std::string data_dir;   // folder with the files of data/eval
  std::string sciq_file;  // explicit SciQ file (--sciq); empty = look in data_dir
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
// One 6-line block of the klosax HellaSwag text: context, gold label, four endings.
Doc HellaswagDoc(const std::vector<std::string>& lines, int index, const std::string& where);
// lm-eval's hellaswag/utils.py preprocess(): strip, " [title]" -> ". ", drop "[...]", "  " -> " ".
std::string HellaswagPreprocess(std::string_view text);

}  // namespace elm::eval
