#include "eval/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace elm::eval {

ProgressBar::ProgressBar() : enabled_(::isatty(STDERR_FILENO) == 1) {}

void ProgressBar::Start(const std::string& label, int64_t total, const std::string& unit) {
  Finish();
  label_ = label;
  unit_ = unit;
  total_ = total;
  start_ = last_draw_ = Clock::now();
  active_ = enabled_;
  if (active_) Draw(0, 0);
}

void ProgressBar::Update(int64_t done, int64_t rate_count) {
  if (!active_) return;
  const auto now = Clock::now();
  if (done < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  Draw(done, rate_count);
}

void ProgressBar::Finish() {
  if (!active_) return;
  std::fputc('\n', stderr);
  std::fflush(stderr);
  active_ = false;
}

void ProgressBar::Draw(int64_t done, int64_t rate_count) {
  constexpr int kWidth = 30;
  const double frac = total_ > 0 ? static_cast<double>(done) / static_cast<double>(total_) : 1.0;
  const int fill = static_cast<int>(frac * kWidth);
  std::string bar(static_cast<size_t>(fill), '=');
  if (fill < kWidth) bar += '>';
  bar.resize(kWidth, ' ');
  const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(rate_count) / elapsed : 0.0;
  std::string eta = "--";
  if (done > 0 && done < total_)
    eta = FormatDuration(elapsed / static_cast<double>(done) * static_cast<double>(total_ - done));
  else if (done >= total_)
    eta = FormatDuration(elapsed);
  // \r and "erase to end of line" redraw in place.
  std::fprintf(stderr, "\r%-15s [%s] %lld/%lld  %.1f %s  %s %s\x1b[K", label_.c_str(), bar.c_str(),
               static_cast<long long>(done), static_cast<long long>(total_), rate, unit_.c_str(),
               done >= total_ ? "in" : "ETA", eta.c_str());
  std::fflush(stderr);
}

std::string FormatDuration(double seconds) {
  const long long s = std::llround(std::max(0.0, seconds));
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, s / 60 % 60);
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%llds", s);
  return buf;
}

}  // namespace elm::eval
