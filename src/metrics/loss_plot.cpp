#include "metrics/loss_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <sstream>
#include <stdexcept>

#include "base/atomic_file.h"
#include "base/error.h"

namespace crsm::metrics {
namespace {

// Layout in SVG user units (pixels at 100% zoom).
constexpr double kPlotW = 640, kPlotH = 380;
constexpr double kLeft = 80, kTop = 50, kBottom = 60;
constexpr double kLegendGap = 24, kLegendRow = 20, kLegendSample = 32;
constexpr double kCharW = 7.2;  // rough width of a 12px sans-serif glyph, to size the legend
constexpr int kTargetTicks = 5;

// Tableau 10: colours that stay distinguishable side by side.
constexpr const char* kColours[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

struct Axis {
  double lo, hi, step;
};

// Rounds x to 1, 2, 5 or 10 times a power of ten, so tick labels stay short.
double nice_step(double x) {
  const double magnitude = std::pow(10.0, std::floor(std::log10(x)));
  const double f = x / magnitude;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * magnitude;
}

// An axis covering [lo, hi] whose ends are multiples of its tick step.
Axis nice_axis(double lo, double hi, double min_step) {
  if (lo == hi) {
    // A single step or a flat loss still needs a range; keep non-negative data off negative ticks.
    const double pad = lo == 0 ? 1 : std::max(min_step, std::abs(lo) * 0.1);
    const bool non_negative = lo >= 0;
    lo -= pad;
    hi += pad;
    if (non_negative) lo = std::max(lo, 0.0);
  }
  const double step = std::max(min_step, nice_step((hi - lo) / (kTargetTicks - 1)));
  // The epsilon keeps rounding noise in lo/step from adding an empty tick interval.
  return {std::floor(lo / step + 1e-9) * step, std::ceil(hi / step - 1e-9) * step, step};
}

int decimals_for(double step) {
  return std::max(0, static_cast<int>(std::ceil(-std::log10(step) - 1e-9)));
}

std::string format_tick(double v, double step) {
  char buf[64];
  if (std::abs(v) < step * 1e-9) v = 0;  // avoid "-0.00" from accumulated rounding
  if (step < 1000) {
    std::snprintf(buf, sizeof buf, "%.*f", decimals_for(step), v);
    return buf;
  }
  // Large step counts read better as 250k or 1.5M than as seven digits.
  struct Unit {
    double scale;
    const char* suffix;
  };
  constexpr Unit kUnits[] = {{1e9, "G"}, {1e6, "M"}, {1e3, "k"}, {1, ""}};
  const Unit* u = kUnits;
  while (u->scale > 1 && std::abs(v) < u->scale) ++u;
  std::snprintf(buf, sizeof buf, "%.*f", decimals_for(step / u->scale), v / u->scale);
  std::string s = buf;
  if (s.find('.') != std::string::npos) {
    s.erase(s.find_last_not_of('0') + 1);
    if (s.back() == '.') s.pop_back();
  }
  return s + u->suffix;
}

std::string escape_xml(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

struct Series {
  const std::vector<LossPoint>* points;
  std::string label;
  const char* colour;
  bool dashed;
};

class Chart {
 public:
  Chart(const std::vector<Series>& series, const std::string& title)
      : series_(series), title_(title) {
    double x_lo = INFINITY, x_hi = -INFINITY, y_lo = INFINITY, y_hi = -INFINITY;
    size_t longest_label = 0;
    for (const auto& s : series_) {
      for (const auto& p : *s.points) {
        if (!std::isfinite(p.loss))
          throw UsageError(s.label + ": loss at step " + std::to_string(p.step) +
                                   " is not finite");
        x_lo = std::min(x_lo, static_cast<double>(p.step));
        x_hi = std::max(x_hi, static_cast<double>(p.step));
        y_lo = std::min(y_lo, p.loss);
        y_hi = std::max(y_hi, p.loss);
      }
      longest_label = std::max(longest_label, s.label.size());
    }
    x_ = nice_axis(x_lo, x_hi, 1);  // steps are integers: no fractional ticks
    y_ = nice_axis(y_lo, y_hi, 0);
    legend_x_ = kLeft + kPlotW + kLegendGap;
    width_ = legend_x_ + kLegendSample + 8 + kCharW * static_cast<double>(longest_label) + 16;
    height_ = std::max(kTop + kPlotH + kBottom, kTop + kLegendRow * (series_.size() + 1));
  }

  std::string render() {
    out_ << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << num(width_) << "\" height=\""
         << num(height_) << "\" viewBox=\"0 0 " << num(width_) << ' ' << num(height_)
         << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
         << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
         << "<text x=\"" << num(kLeft + kPlotW / 2) << "\" y=\"30\" text-anchor=\"middle\""
         << " font-size=\"16\" font-weight=\"bold\">" << escape_xml(title_) << "</text>\n";
    axes();
    for (const auto& s : series_) line(s);
    legend();
    out_ << "</svg>\n";
    return out_.str();
  }

 private:
  double px(double step) const { return kLeft + (step - x_.lo) / (x_.hi - x_.lo) * kPlotW; }
  double py(double loss) const { return kTop + (y_.hi - loss) / (y_.hi - y_.lo) * kPlotH; }

  static int tick_count(const Axis& a) {
    return static_cast<int>(std::lround((a.hi - a.lo) / a.step)) + 1;
  }

  void axes() {
    const double bottom = kTop + kPlotH, right = kLeft + kPlotW;
    out_ << "<g stroke=\"#e6e6e6\">\n";
    for (int i = 0; i < tick_count(x_); ++i) {
      const double x = px(x_.lo + i * x_.step);
      out_ << "<line x1=\"" << num(x) << "\" y1=\"" << num(kTop) << "\" x2=\"" << num(x)
           << "\" y2=\"" << num(bottom) << "\"/>\n";
    }
    for (int i = 0; i < tick_count(y_); ++i) {
      const double y = py(y_.lo + i * y_.step);
      out_ << "<line x1=\"" << num(kLeft) << "\" y1=\"" << num(y) << "\" x2=\"" << num(right)
           << "\" y2=\"" << num(y) << "\"/>\n";
    }
    out_ << "</g>\n<rect x=\"" << num(kLeft) << "\" y=\"" << num(kTop) << "\" width=\""
         << num(kPlotW) << "\" height=\"" << num(kPlotH)
         << "\" fill=\"none\" stroke=\"#333\"/>\n";

    out_ << "<g class=\"x-ticks\" text-anchor=\"middle\">\n";
    for (int i = 0; i < tick_count(x_); ++i) {
      const double v = x_.lo + i * x_.step;
      out_ << "<text x=\"" << num(px(v)) << "\" y=\"" << num(bottom + 18) << "\">"
           << format_tick(v, x_.step) << "</text>\n";
    }
    out_ << "</g>\n<g class=\"y-ticks\" text-anchor=\"end\">\n";
    for (int i = 0; i < tick_count(y_); ++i) {
      const double v = y_.lo + i * y_.step;
      out_ << "<text x=\"" << num(kLeft - 6) << "\" y=\"" << num(py(v) + 4) << "\">"
           << format_tick(v, y_.step) << "</text>\n";
    }
    out_ << "</g>\n<text x=\"" << num(kLeft + kPlotW / 2) << "\" y=\"" << num(bottom + 42)
         << "\" text-anchor=\"middle\" font-size=\"13\">step</text>\n"
         << "<text transform=\"translate(22 " << num(kTop + kPlotH / 2)
         << ") rotate(-90)\" text-anchor=\"middle\" font-size=\"13\">loss</text>\n";
  }

  void stroke(const Series& s) {
    out_ << " fill=\"none\" stroke=\"" << s.colour << "\" stroke-width=\"1.5\""
         << " stroke-linejoin=\"round\"" << (s.dashed ? " stroke-dasharray=\"6 4\"" : "");
  }

  void marker(const Series& s, double x, double y) {
    out_ << "<circle cx=\"" << num(x) << "\" cy=\"" << num(y) << "\" r=\"3\" fill=\"" << s.colour
         << "\"/>\n";
  }

  void line(const Series& s) {
    out_ << "<polyline";
    stroke(s);
    out_ << " points=\"";
    for (size_t i = 0; i < s.points->size(); ++i) {
      const auto& p = (*s.points)[i];
      out_ << (i ? " " : "") << num(px(static_cast<double>(p.step))) << ',' << num(py(p.loss));
    }
    // The title shows the series name when hovering over the line in a browser.
    out_ << "\"><title>" << escape_xml(s.label) << "</title></polyline>\n";
    // A one-point polyline draws nothing, so a lone train point gets a marker too.
    if (s.dashed || s.points->size() == 1)
      for (const auto& p : *s.points) marker(s, px(static_cast<double>(p.step)), py(p.loss));
  }

  void legend() {
    for (size_t i = 0; i < series_.size(); ++i) {
      const Series& s = series_[i];
      const double y = kTop + kLegendRow * (i + 0.5);
      out_ << "<line x1=\"" << num(legend_x_) << "\" y1=\"" << num(y) << "\" x2=\""
           << num(legend_x_ + kLegendSample) << "\" y2=\"" << num(y) << '"';
      stroke(s);
      out_ << "/>\n";
      if (s.dashed) marker(s, legend_x_ + kLegendSample / 2, y);
      out_ << "<text x=\"" << num(legend_x_ + kLegendSample + 8) << "\" y=\"" << num(y + 4)
           << "\">" << escape_xml(s.label) << "</text>\n";
    }
  }

  const std::vector<Series>& series_;
  std::string title_;
  Axis x_{}, y_{};
  double legend_x_, width_, height_;
  std::ostringstream out_;
};

}  // namespace

void write_loss_plot(const std::vector<RunMetrics>& runs, const std::string& output_path,
                     const std::string& title) {
  if (runs.empty()) throw UsageError(output_path + ": no runs to plot");
  std::vector<Series> series;
  for (size_t i = 0; i < runs.size(); ++i) {
    const char* colour = kColours[i % std::size(kColours)];
    if (!runs[i].train.empty())
      series.push_back({&runs[i].train, runs[i].name + " train", colour, false});
    if (!runs[i].val.empty())
      series.push_back({&runs[i].val, runs[i].name + " val", colour, true});
  }
  if (series.empty()) throw UsageError(output_path + ": no run has a loss point");
  base::write_file_atomically(output_path, Chart(series, title).render());
}

}  // namespace crsm::metrics
