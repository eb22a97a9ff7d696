// A one-line progress bar with rate and ETA on stderr, drawn only when stderr is a terminal
// (logs and pipes stay clean). Redraws are throttled, so calling Update per item is cheap.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace elm::eval {

class ProgressBar {
 public:
  // enabled = false draws nothing; the default follows isatty(stderr).
  ProgressBar();
  explicit ProgressBar(bool enabled) : enabled_(enabled) {}
  ~ProgressBar() { Finish(); }
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // Starts a new bar: `label` before it, `unit` after the rate ("req/s", "windows/s").
  void Start(const std::string& label, int64_t total, const std::string& unit);
  // done items of total; rate_count is what the rate counts (e.g. requests, when items are docs).
  void Update(int64_t done, int64_t rate_count);
  // Ends the line (if a bar is showing).
  void Finish();

 private:
  void Draw(int64_t done, int64_t rate_count);

  using Clock = std::chrono::steady_clock;
  bool enabled_ = false, active_ = false;
  std::string label_, unit_;
  int64_t total_ = 0;
  Clock::time_point start_, last_draw_;
};

// "1h02m", "3m07s", "12s".
std::string FormatDuration(double seconds);

}  // namespace elm::eval
