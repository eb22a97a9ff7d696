#include "report/loss_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "report/corenet_log.h"

namespace elm {
namespace {

// A record at a step at or before the last one starts over from there (a resumed run whose log
// kept the later steps, or a resume from an earlier checkpoint): it replaces those later records,
// so a log always draws as one run.
void Append(std::vector<double>& steps, std::vector<double>& values, double step, double value) {
  while (!steps.empty() && steps.back() >= step) {
    steps.pop_back();
    values.pop_back();
  }
  steps.push_back(step);
  values.push_back(value);
}

}  // namespace

LossSeries ReadLossSeries(const std::string& log_path, const std::string& metric) {
  if (LooksLikeCoreNetLog(log_path)) {
    if (metric != "loss")
      Fail(log_path, ": a CoreNet training log holds the loss only, not '", metric, "'");
    return ReadCoreNetLog(log_path);
  }
  std::ifstream in(log_path);
  if (!in) Fail(log_path, ": cannot open the training log");
  LossSeries s;
  s.metric = metric;
  const std::string val_key = "val_" + metric;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      // A line cut short by an interrupted or failed write (kill -9, a full disk).
      std::fprintf(stderr, "warning: %s:%lld: skipped a line that is not valid JSON (cut short?)\n",
                   log_path.c_str(), static_cast<long long>(number));
      continue;
    }
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number()) continue;
    const double step = j["step"].get<double>();
    if (j.contains(metric) && j[metric].is_number())
      Append(s.train_step, s.train_loss, step, j[metric].get<double>());
    if (j.contains(val_key) && j[val_key].is_number())
      Append(s.val_step, s.val_loss, step, j[val_key].get<double>());
  }
  if (s.train_step.empty() && s.val_step.empty())
    Fail(log_path, ": no ", metric, " records (lines with \"step\" and \"", metric, "\" or \"",
         val_key, "\")");
  return s;
}

namespace {

// Ticks at 1, 2 or 5 × 10^k covering [lo, hi] with about `want` intervals.
std::vector<double> NiceTicks(double lo, double hi, int want, double* step_out) {
  const double raw = (hi - lo) / want;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) t.push_back(v);
  *step_out = step;
  return t;
}

std::string Num(double v, double step) {
  char b[32];
  const int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
  std::snprintf(b, sizeof b, "%.*f", decimals, v);
  return b;
}

std::string Escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<')
      o += "&lt;";
    else if (c == '>')
      o += "&gt;";
    else if (c == '&')
      o += "&amp;";
    else
      o += c;
  }
  return o;
}

}  // namespace

std::string LossPlotSvg(const LossSeries& s, const std::string& title, int width, int height) {
  return LossPlotSvg(std::vector<NamedLossSeries>{{"", s}}, title, width, height);
}

std::string LossPlotSvg(const std::vector<NamedLossSeries>& runs, const std::string& title,
                        int width, int height) {
  const double L = 70, R = 20, T = 40, Bm = 50;  // margins
  const double pw = width - L - R, ph = height - T - Bm;
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  auto extend = [&](const std::vector<double>& xs, const std::vector<double>& ys) {
    for (size_t i = 0; i < xs.size(); ++i) {
      if (!std::isfinite(ys[i])) continue;
      x0 = std::min(x0, xs[i]), x1 = std::max(x1, xs[i]);
      y0 = std::min(y0, ys[i]), y1 = std::max(y1, ys[i]);
    }
  };
  for (const NamedLossSeries& r : runs) {
    extend(r.series.train_step, r.series.train_loss);
    extend(r.series.val_step, r.series.val_loss);
  }
  if (x0 > x1) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 - x0 < 1) x1 = x0 + 1;
  if (y1 - y0 < 1e-6) y0 -= 0.5, y1 += 0.5;
  const double pad = 0.05 * (y1 - y0);
  y0 -= pad, y1 += pad;
  auto X = [&](double v) { return L + (v - x0) / (x1 - x0) * pw; };
  auto Y = [&](double v) { return T + (y1 - v) / (y1 - y0) * ph; };
  // The training loss is logged every step: where steps are missing (a log cut short and resumed
  // by hand, lines lost) the line stops rather than bridge the gap.
  auto path = [&](const std::vector<double>& xs, const std::vector<double>& ys, bool break_gaps) {
    std::string d;
    char b[64];
    std::vector<double> gaps;
    for (size_t i = 1; i < xs.size(); ++i) gaps.push_back(xs[i] - xs[i - 1]);
    std::sort(gaps.begin(), gaps.end());
    const double usual = gaps.empty() ? 1 : std::max(1.0, gaps[gaps.size() / 2]);
    for (size_t i = 0; i < xs.size(); ++i) {
      if (!std::isfinite(ys[i])) continue;
      const bool gap = break_gaps && i > 0 && xs[i] - xs[i - 1] > 2 * usual;
      std::snprintf(b, sizeof b, "%s%.1f,%.1f", d.empty() || gap ? (d.empty() ? "M" : " M") : " L",
                    X(xs[i]), Y(ys[i]));
      d += b;
    }
    return d;
  };
  // The key drawn (elm plot --metric): the first run's; every run was read with the same one.
  const std::string metric = runs.empty() ? std::string("loss") : runs.front().series.metric;
  std::string o;
  char b[512];
  std::snprintf(b, sizeof b,
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
                "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
                width, height, width, height);
  o += b;
  std::snprintf(b, sizeof b,
                "<text x=\"%.1f\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">%s</text>\n",
                L + pw / 2, Escape(title).c_str());
  o += b;
  double step;
  for (double v : NiceTicks(y0, y1, 6, &step)) {
    std::snprintf(b, sizeof b,
                  "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>"
                  "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                  L, Y(v), L + pw, Y(v), L - 6, Y(v) + 4, Num(v, step).c_str());
    o += b;
  }
  for (double v : NiceTicks(x0, x1, 8, &step)) {
    std::snprintf(b, sizeof b,
                  "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>"
                  "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                  X(v), T, X(v), T + ph, X(v), T + ph + 18, Num(v, std::max(step, 1.0)).c_str());
    o += b;
  }
  std::snprintf(
      b, sizeof b,
      "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
      "stroke=\"#333\"/>\n<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">step</text>\n"
      "<text transform=\"translate(16 %.1f) rotate(-90)\" text-anchor=\"middle\">%s</text>\n",
      L, T, pw, ph, L + pw / 2, height - 10, T + ph / 2, Escape(metric).c_str());
  o += b;
  // One colour family per run: raw and smoothed training loss, validation loss.
  struct Colors {
    const char *raw, *smooth, *val;
  };
  static const Colors kColors[] = {{"#9ecae1", "#1f77b4", "#d62728"},
                                   {"#fdd0a2", "#ff7f0e", "#9467bd"},
                                   {"#a1d99b", "#2ca02c", "#8c564b"},
                                   {"#d9d9d9", "#636363", "#e377c2"}};
  struct Entry {
    const char* color;
    double width;
    std::string text;
  };
  std::vector<Entry> legend;
  for (size_t r = 0; r < runs.size(); ++r) {
    const LossSeries& s = runs[r].series;
    const Colors& c = kColors[r % (sizeof kColors / sizeof kColors[0])];
    const std::string who = runs.size() == 1 ? "" : runs[r].label + ": ";
    if (!s.train_step.empty()) {
      // Exponential moving average (debiased), the curve to read; the raw loss stays faint.
      std::vector<double> ema(s.train_loss.size());
      double m = 0, w = 0;
      const double beta = s.train_loss.size() > 50 ? 0.9 : 0.6;
      for (size_t i = 0; i < ema.size(); ++i) {
        if (std::isfinite(s.train_loss[i]))
          m = beta * m + (1 - beta) * s.train_loss[i], w = beta * w + (1 - beta);
        ema[i] = w > 0 ? m / w : s.train_loss[i];
      }
      o += "<path d=\"" + path(s.train_step, s.train_loss, true) + "\" fill=\"none\" stroke=\"" +
           c.raw + "\" stroke-width=\"1\"/>\n";
      o += "<path d=\"" + path(s.train_step, ema, true) + "\" fill=\"none\" stroke=\"" + c.smooth +
           "\" stroke-width=\"2\"/>\n";
      if (runs.size() == 1) legend.push_back({c.raw, 1, "train " + metric});
      legend.push_back({c.smooth, 2, who + "train " + metric + " (smoothed)"});
    }
    if (!s.val_step.empty()) {
      o += "<path d=\"" + path(s.val_step, s.val_loss, false) + "\" fill=\"none\" stroke=\"" +
           c.val + "\" stroke-width=\"2\"/>\n";
      for (size_t i = 0; i < s.val_step.size(); ++i) {
        if (!std::isfinite(s.val_loss[i])) continue;
        std::snprintf(b, sizeof b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
                      X(s.val_step[i]), Y(s.val_loss[i]), c.val);
        o += b;
      }
      legend.push_back({c.val, 2, who + "validation " + metric});
    }
  }
  // Legend.
  size_t longest = 0;
  for (const Entry& e : legend) longest = std::max(longest, e.text.size());
  const double box = std::max(160.0, 40.0 + 6.5 * static_cast<double>(longest));
  const double lx = L + pw - box - 10, ly = T + 12;
  std::snprintf(b, sizeof b,
                "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.0f\" height=\"%d\" fill=\"white\" "
                "stroke=\"#ccc\"/>\n",
                lx - 8, ly - 10, box, 4 + 18 * static_cast<int>(legend.size()));
  o += b;
  for (size_t i = 0; i < legend.size(); ++i) {
    const double y = ly + 18 * static_cast<double>(i);
    std::snprintf(b, sizeof b,
                  "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                  "stroke-width=\"%.0f\"/><text x=\"%.1f\" y=\"%.1f\">",
                  lx, y, lx + 24, y, legend[i].color, legend[i].width, lx + 30, y + 4);
    o += b + Escape(legend[i].text) + "</text>\n";
  }
  o += "</svg>\n";
  return o;
}

}  // namespace elm
