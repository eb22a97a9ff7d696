#include "train/train_log.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/error.h"
#include "base/mmap_file.h"

namespace elm {

TrainLog::TrainLog(const std::string& path, int64_t keep_through_step) : path_(path) {
  std::string kept;
  if (keep_through_step >= 0) {
    std::ifstream in(path);
    std::string line;
    for (int64_t number = 1; std::getline(in, line); ++number) {
      try {
        const auto j = nlohmann::json::parse(line);
        if (j.is_object() && j.value("step", int64_t{-1}) <= keep_through_step) kept += line + "\n";
      } catch (const nlohmann::json::exception&) {
        // A line cut short by the kill or the failed write that interrupted the run: dropped.
        std::fprintf(stderr,
                     "warning: %s:%lld: dropped a line that is not valid JSON (cut short by an "
                     "interrupted write?)\n",
                     path.c_str(), static_cast<long long>(number));
      }
    }
  }
  WriteFileAtomic(path, kept.data(), kept.size());
  f_ = std::fopen(path.c_str(), "a");
  if (f_ == nullptr) Fail(path, ": cannot open the training log for writing");
}

TrainLog::~TrainLog() {
  if (f_ != nullptr) std::fclose(f_);
}

// A failed write (a full disk) stops the run with an error rather than leaving a silent gap in
// the log: the checkpoints up to here are intact and --resume continues (docs/reliability.md).
void TrainLog::Line(const std::string& json) {
  const std::string line = json + "\n";
  errno = 0;
  const bool ok =
      std::fwrite(line.data(), 1, line.size(), f_) == line.size() && std::fflush(f_) == 0;
  if (!ok) {
    const int err = errno;
    std::clearerr(f_);
    Fail(path_, ": cannot write the training log",
         err != 0 ? std::string(": ") + std::strerror(err) : std::string(),
         "; the run stops here (resume from the last checkpoint with --resume)");
  }
}

void TrainLog::Step(const StepRecord& r) {
  nlohmann::json j;
  j["step"] = r.step;
  j["loss"] = r.loss;
  if (r.has_z_loss) j["ce"] = r.ce;
  j["lr"] = r.lr;
  j["grad_norm"] = r.grad_norm;
  j["tokens_per_s"] = std::round(r.tokens_per_s * 10) / 10;
  j["mfu"] = std::round(r.mfu * 1e5) / 1e5;
  j["tokens"] = r.tokens;
  j["elapsed_s"] = std::round(r.elapsed_s * 1000) / 1000;
  if (r.peak_rss_bytes > 0)
    j["peak_rss_mb"] = std::round(static_cast<double>(r.peak_rss_bytes) / 1e5) / 10;
  if (r.activation_bytes > 0)
    j["activation_mb"] = std::round(static_cast<double>(r.activation_bytes) / 1e5) / 10;
  Line(j.dump());
}

int64_t PeakRssBytes() {
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;  // Linux reports kilobytes
}

void TrainLog::Validation(int64_t step, double val_loss, int64_t val_tokens) {
  nlohmann::json j;
  j["step"] = step;
  j["val_loss"] = val_loss;
  j["val_tokens"] = val_tokens;
  Line(j.dump());
}

std::string FormatDuration(double s) {
  if (!(s >= 0) || !std::isfinite(s)) return "?";
  const auto t = static_cast<int64_t>(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(t / 3600),
                  static_cast<long long>(t % 3600 / 60));
  else if (t >= 60)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(t / 60),
                  static_cast<long long>(t % 60));
  else
    std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(t));
  return buf;
}

Progress::Progress(int64_t first_step, int64_t last_step, int log_freq)
    : first_(first_step),
      last_(last_step),
      log_freq_(log_freq),
      tty_(::isatty(2) != 0),
      start_(std::chrono::steady_clock::now()) {}

void Progress::Update(const StepRecord& r) {
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const int64_t done = r.step - first_, total = last_ - first_;
  const double eta =
      done > 0 ? elapsed / static_cast<double>(done) * static_cast<double>(total - done) : NAN;
  char stats[160];
  std::snprintf(stats, sizeof stats, "loss %.4f | lr %.2e | grad %.3f | %.0f tok/s | mfu %.1f%%",
                r.loss, r.lr, r.grad_norm, r.tokens_per_s, 100 * r.mfu);
  if (tty_) {
    constexpr int kWidth = 24;
    const int filled = total > 0 ? static_cast<int>(kWidth * done / total) : kWidth;
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(kWidth, '.');
    std::fprintf(stderr, "\r[%s] %lld/%lld %s | ETA %s\x1b[K", bar.c_str(),
                 static_cast<long long>(r.step), static_cast<long long>(last_), stats,
                 FormatDuration(eta).c_str());
    bar_shown_ = true;
  } else if (r.step % log_freq_ == 0 || r.step == last_) {
    std::fprintf(stderr, "step %lld/%lld | %s | ETA %s\n", static_cast<long long>(r.step),
                 static_cast<long long>(last_), stats, FormatDuration(eta).c_str());
  }
  std::fflush(stderr);
}

void Progress::Message(const std::string& line) {
  if (bar_shown_) std::fprintf(stderr, "\r\x1b[K");
  std::fprintf(stderr, "%s\n", line.c_str());
  bar_shown_ = false;
}

void Progress::Finish() {
  if (bar_shown_) std::fprintf(stderr, "\n");
  bar_shown_ = false;
}

}  // namespace elm
