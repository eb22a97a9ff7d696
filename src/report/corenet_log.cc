#include "report/corenet_log.h"

#include <cstdlib>
#include <fstream>
#include <optional>

#include "base/error.h"

namespace elm {
namespace {

// The number at s[pos] (strtod syntax), or nullopt.
std::optional<double> NumberAt(const std::string& s, size_t pos) {
  if (pos >= s.size()) return std::nullopt;
  const char* begin = s.c_str() + pos;
  char* end = nullptr;
  const double v = std::strtod(begin, &end);
  if (end == begin) return std::nullopt;
  return v;
}

// The loss after `key` ("loss: " or "loss="): a number, or the 'total_loss' of a dict.
std::optional<double> LossAfter(const std::string& line, const std::string& key) {
  const size_t k = line.find(key);
  if (k == std::string::npos) return std::nullopt;
  size_t p = k + key.size();
  if (p < line.size() && line[p] == '{') {
    const size_t t = line.find("'total_loss':", p);
    if (t == std::string::npos) return std::nullopt;
    p = t + 13;
    while (p < line.size() && line[p] == ' ') ++p;
  }
  return NumberAt(line, p);
}

// The iteration of an iteration summary line ("Epoch:   0 [    5000/  350000]"), or nullopt.
std::optional<double> IterationOf(const std::string& line) {
  const size_t e = line.find("Epoch:");
  if (e == std::string::npos) return std::nullopt;
  const size_t open = line.find('[', e);
  const size_t slash = line.find('/', e);
  if (open == std::string::npos || slash == std::string::npos || slash < open) return std::nullopt;
  size_t p = open + 1;
  while (p < line.size() && line[p] == ' ') ++p;
  return NumberAt(line, p);
}

void AppendPoint(std::vector<double>& xs, std::vector<double>& ys, double x, double y) {
  while (!xs.empty() && xs.back() >= x) {  // a restarted run: the later records go
    xs.pop_back();
    ys.pop_back();
  }
  xs.push_back(x);
  ys.push_back(y);
}

}  // namespace

bool LooksLikeCoreNetLog(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  for (int n = 0; n < 2000 && std::getline(in, line); ++n) {
    if (n == 0 && !line.empty() && line[0] == '{') return false;  // JSONL (elm's own log)
    if (IterationOf(line) && LossAfter(line, "loss: ")) return true;
  }
  return false;
}

LossSeries ReadCoreNetLog(const std::string& path) {
  std::ifstream in(path);
  if (!in) Fail(path, ": cannot open the training log");
  LossSeries s;
  std::string line;
  double last_iteration = 0;
  bool in_validation = false;
  while (std::getline(in, line)) {
    if (const auto it = IterationOf(line)) {
      in_validation = false;
      if (const auto loss = LossAfter(line, "loss: ")) {
        last_iteration = *it;
        AppendPoint(s.train_step, s.train_loss, *it, *loss);
      }
      continue;
    }
    if (line.find("*** Validation summary for epoch") != std::string::npos &&
        line.find("EMA") == std::string::npos) {
      in_validation = true;
      continue;
    }
    if (in_validation) {
      if (const auto loss = LossAfter(line, "loss=")) {
        AppendPoint(s.val_step, s.val_loss, last_iteration, *loss);
        in_validation = false;
      }
    }
  }
  if (s.train_step.empty() && s.val_step.empty())
    Fail(path, ": no CoreNet loss lines (\"Epoch: E [iteration/max], loss: ...\")");
  return s;
}

}  // namespace elm
