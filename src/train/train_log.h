// Training metrics: one JSON object per line (train_log.jsonl) and, when stderr is a terminal, a
// progress bar with an ETA; otherwise plain progress lines every log_freq steps.
//   {"step": 12, "loss": 5.31, "lr": 0.0003, "grad_norm": 1.2, "tokens_per_s": 5100, "mfu": 0.031,
//    "tokens": 24576, "elapsed_s": 4.8, "peak_rss_mb": 812.4, "activation_mb": 96.1}
//   {"step": 50, "val_loss": 5.02, "val_tokens": 16384}
// "step" counts completed optimizer steps. A resumed run keeps the lines up to its checkpoint's
// step and drops the rest, so the file always describes one consistent run.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace elm {

struct StepRecord {
  int64_t step = 0;
  double loss = 0, ce = 0;  // ce is logged separately only with z-loss
  bool has_z_loss = false;
  double lr = 0, grad_norm = 0, tokens_per_s = 0, mfu = 0;
  int64_t tokens = 0;
  double elapsed_s = 0;
  int64_t peak_rss_bytes = 0;    // this process's peak resident set so far (PeakRssBytes)
  int64_t activation_bytes = 0;  // what the model holds for backward (TrainModel::ActivationBytes)
};

class TrainLog {
 public:
  // keep_through_step < 0 starts a fresh file; otherwise lines with step ≤ it are kept.
  TrainLog(const std::string& path, int64_t keep_through_step);
  ~TrainLog();
  TrainLog(const TrainLog&) = delete;
  TrainLog& operator=(const TrainLog&) = delete;
  void Step(const StepRecord& r);
  void Validation(int64_t step, double val_loss, int64_t val_tokens);
  const std::string& path() const { return path_; }

 private:
  void Line(const std::string& json);
  std::string path_;
  std::FILE* f_ = nullptr;
};

// Console progress. A bar on a terminal, periodic lines otherwise.
class Progress {
 public:
  Progress(int64_t first_step, int64_t last_step, int log_freq);
  void Update(const StepRecord& r);
  void Message(const std::string& line);  // printed on its own line
  void Finish();

 private:
  int64_t first_, last_;
  int log_freq_;
  bool tty_;
  bool bar_shown_ = false;
  std::chrono::steady_clock::time_point start_;
};

// This process's peak resident set size in bytes (getrusage's ru_maxrss), for the memory report.
int64_t PeakRssBytes();

// "1h02m", "3m20s", "45s"
std::string FormatDuration(double seconds);

}  // namespace elm
