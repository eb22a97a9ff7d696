#include "eval/fewshot.h"

#include <map>

#include "base/error.h"

namespace elm::eval {

bool SameDoc(const Doc& a, const Doc& b) {
  if (a.description != b.description || a.example != b.example || a.subset != b.subset ||
      a.choices != b.choices || a.gold != b.gold || a.requests.size() != b.requests.size())
    return false;
  for (size_t i = 0; i < a.requests.size(); ++i)
    if (a.requests[i].context != b.requests[i].context ||
        a.requests[i].continuation != b.requests[i].continuation)
      return false;
  return true;
}

FewshotSampler::FewshotSampler(const TaskInfo& task, std::vector<const Doc*> pool, uint64_t seed)
    : task_(task), pool_(std::move(pool)), rnd_(seed) {}

std::string FewshotSampler::Context(const Doc& doc, int k) {
  if (k <= 0) return "";
  const size_t n = static_cast<size_t>(k) + (task_.fewshot_draws_extra ? 1 : 0);
  if (n > pool_.size())
    Fail(task_.name, doc.subset.empty() ? "" : " (" + doc.subset + ")", ": ", k, "-shot needs ", n,
         " few-shot docs but its ", *task_.fewshot_split ? task_.fewshot_split : task_.split,
         " split has ", pool_.size());
  std::vector<const Doc*> drawn;
  if (task_.sampling == FewshotSampling::kFirstN) {
    drawn.assign(pool_.begin(), pool_.begin() + static_cast<std::ptrdiff_t>(n));
  } else {
    for (size_t i : rnd_.Sample(pool_.size(), n)) drawn.push_back(pool_[i]);
  }
  std::string out;
  int used = 0;
  for (const Doc* d : drawn) {
    if (used == k) break;
    if (SameDoc(*d, doc)) continue;
    if (used > 0) out += "\n\n";  // fewshot_delimiter
    out += d->example;
    ++used;
  }
  return out + "\n\n";
}

void PrependContext(Doc& doc, const std::string& examples) {
  const std::string prefix = doc.description + examples;
  if (prefix.empty()) return;
  for (auto& r : doc.requests) r.context = prefix + r.context;
}

void BuildFewshotPrompts(const TaskInfo& task, std::vector<Doc>& docs, const std::vector<Doc>& pool,
                         int k) {
  std::map<std::string, std::vector<const Doc*>> by_subset;
  for (const Doc& d : pool) by_subset[d.subset].push_back(&d);
  std::map<std::string, FewshotSampler> samplers;
  for (Doc& d : docs) {
    std::string examples;
    if (k > 0) {
      auto it = samplers.find(d.subset);
      if (it == samplers.end())
        it = samplers.emplace(d.subset, FewshotSampler(task, by_subset[d.subset])).first;
      examples = it->second.Context(d, k);
    }
    PrependContext(d, examples);
  }
}

}  // namespace elm::eval
