// libFuzzer target for `elm eval`'s data readers: byte 0 picks a task (AllTasks order) and
// byte 1 the shots (and CSV, bit 2); the rest is that task's data file (JSON lines or a JSON
// array of Hugging Face or llm-foundry rows, the klosax HellaSwag text, RACE's Python-literal
// `problems`, the original MMLU and CrowS-Pairs CSV). The
// docs are read by LoadDocs and their few-shot prompts built from the same file; with byte 0 =
// 255 the rest goes to ParsePyLiteral directly. Rejections must be elm::Error (fuzz_util.h).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "eval/fewshot.h"
#include "eval/py_literal.h"
#include "eval/tasks.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const std::string_view body = elm_fuzz::AsText(data + 2, size - 2);
  elm_fuzz::ExpectOnlyElmErrors([&] {
    if (data[0] == 255) {
      volatile size_t n = elm::eval::ParsePyLiteral(body, "fuzz").size();
      (void)n;
      return;
    }
    const auto& tasks = elm::eval::AllTasks();
    const elm::eval::TaskInfo& task = tasks[data[0] % tasks.size()];
    // Byte 1 bit 2: a CSV file (CrowS-Pairs' original release; for MMLU a folder holding one
    // <subject>_test.csv).
    std::string path;
    if ((data[1] & 4) && std::string_view(task.name) == "mmlu") {
      path = elm_fuzz::WriteScratch("mmlu/anatomy_test.csv", body);
      path = path.substr(0, path.rfind('/'));
    } else {
      path = elm_fuzz::WriteScratch((data[1] & 4) ? "data.csv" : "data.jsonl", body);
    }
    std::vector<elm::eval::Doc> docs = elm::eval::LoadDocs(task, path);
    const std::vector<elm::eval::Doc> pool = docs;
    elm::eval::BuildFewshotPrompts(task, docs, pool, data[1] % 4);
    size_t chars = 0;
    for (const auto& d : docs)
      for (const auto& r : d.requests) chars += r.context.size() + r.continuation.size();
    volatile size_t sink = chars;
    (void)sink;
  });
  return 0;
}
