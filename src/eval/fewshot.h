// lm-eval's few-shot prompts at dc90fec (lm_eval/api/samplers.py ContextSampler and
// FirstNSampler, ConfigurableTask.fewshot_context in lm_eval/api/task.py; docs/evaluation.md
// "Few-shot"): the prompt is description + the examples, each "doc_to_text + target_delimiter +
// target", joined by "\n\n" and followed by "\n\n", + the doc's own context. Examples are drawn
// by random.Random(1234).sample over the few-shot split (one generator per task, advancing doc
// by doc in evaluation order), or are its first k docs (first_n, MMLU). When the YAML's
// fewshot_split equals its test_split, k + 1 are drawn; a drawn example equal to the evaluated
// doc is always dropped, and the first k that remain are used.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eval/python_random.h"
#include "eval/tasks.h"

namespace elm::eval {

// Two docs are the same doc for the "drop the evaluated doc" rule when their description,
// few-shot rendering and requests are equal (lm-eval compares the row dicts; docs/evaluation.md).
bool SameDoc(const Doc& a, const Doc& b);

class FewshotSampler {
 public:
  // `pool`: the few-shot split's docs (for a subset task, that subset's), before any prompt is
  // built. The pointers must outlive the sampler.
  FewshotSampler(const TaskInfo& task, std::vector<const Doc*> pool, uint64_t seed = 1234);

  // ContextSampler.get_context(doc, k): "" for k == 0. Throws elm::Error when the split has
  // fewer docs than the draw needs.
  std::string Context(const Doc& doc, int k);

 private:
  const TaskInfo& task_;
  std::vector<const Doc*> pool_;
  PyRandom rnd_;
};

// fewshot_context: prepends description + examples to every request's context (for
// multiple-input tasks such as WinoGrande the option contexts; for the rest the one context).
void PrependContext(Doc& doc, const std::string& examples);

// Builds the k-shot prompt of every doc, in order: one sampler per subset (MMLU subject),
// drawing from the `pool` docs of the same subset. k == 0 still prepends descriptions.
void BuildFewshotPrompts(const TaskInfo& task, std::vector<Doc>& docs, const std::vector<Doc>& pool,
                         int k);

}  // namespace elm::eval
