// CrowS-Pairs (English) as lm-eval's crows_pairs/crows_pairs_english.yaml at dc90fec: an empty
// context (plus any few-shot examples), the two sentences scored whole with no target delimiter,
// likelihood_diff = |ll(sent_more) - ll(sent_less)| and pct_stereotype = ll(sent_more) >
// ll(sent_less) (docs/evaluation.md "CrowS-Pairs").
#include <algorithm>

#include "base/error.h"
#include "base/mmap_file.h"
#include "eval/csv.h"
#include "eval/task_rows.h"
#include "eval/tasks.h"

namespace elm::eval {
using nlohmann::json;
using namespace rows;  // NOLINT: the shared row helpers (task_rows.h)

Doc CrowsPairsDoc(const json& row, int index, const std::string& where) {
  const std::string more = Str(row, "sent_more", where), less = Str(row, "sent_less", where);
  if (more.empty() || less.empty()) Fail(where, ": empty sentence");
  Doc d;
  d.index = index;
  d.requests = {{"", more}, {"", less}};  // target_delimiter ""
  d.choices = {more, less};
  d.gold = 0;        // doc_to_target 0: the example shows sent_more
  d.example = more;  // doc_to_text "" + "" + sent_more
  return d;
}

std::vector<Doc> LoadCrowsPairs(const std::string& path) {
  if (path.size() >= 4 && path.compare(path.size() - 4, 4, ".csv") == 0) {
    // The original release's crows_pairs_anonymized.csv: a header naming the columns.
    const auto recs = ParseCsv(ReadTextFile(path), path);
    if (recs.empty()) Fail(path, ": empty CSV");
    const auto& head = recs[0].fields;
    const auto col = [&](const char* name) {
      const auto it = std::find(head.begin(), head.end(), name);
      if (it == head.end()) Fail(path, ":1: no column \"", name, "\" in the header");
      return static_cast<size_t>(it - head.begin());
    };
    const size_t more = col("sent_more"), less = col("sent_less");
    std::vector<Doc> docs;
    for (size_t i = 1; i < recs.size(); ++i) {
      const std::string where = path + ":" + std::to_string(recs[i].line);
      if (recs[i].fields.size() != head.size())
        Fail(where, ": ", recs[i].fields.size(), " fields, the header has ", head.size());
      const json row = {{"sent_more", recs[i].fields[more]}, {"sent_less", recs[i].fields[less]}};
      docs.push_back(CrowsPairsDoc(row, static_cast<int>(docs.size()), where));
    }
    return docs;
  }
  std::vector<std::string> where;
  const auto rows = ReadRows(path, &where);
  std::vector<Doc> docs;
  docs.reserve(rows.size());
  for (size_t i = 0; i < rows.size(); ++i)
    docs.push_back(CrowsPairsDoc(rows[i], static_cast<int>(i), where[i]));
  return docs;
}

}  // namespace elm::eval
