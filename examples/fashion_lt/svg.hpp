// svg.hpp — the example's chart as hand-written SVG (no dependencies): per-class test recall by
// loss (grouped bars) and the training-loss curves (each normalized by its epoch-1 value).
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace fashion {

/// What the chart shows. Rows of `recall` and `loss_curves` follow `loss_names`.
struct ChartData {
  std::string title;
  std::vector<std::string> loss_names;
  std::vector<std::string> class_labels;  ///< one short name per class
  std::vector<int> class_counts;          ///< training samples per class
  Eigen::MatrixXd recall;                 ///< losses x classes, fractions (mean over seeds)
  Eigen::MatrixXd loss_curves;            ///< losses x epochs, mean training loss (mean over seeds)
  int reweighting_epoch = -1;             ///< 0-based epoch where DRW starts; -1: not marked
};

namespace detail {

inline std::string xml_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += ch;
    }
  }
  return out;
}

/// A categorical palette (Tableau 10), cycled.
inline const char* color(std::size_t i) {
  static const char* const palette[] = {"#4e79a7", "#f28e2b", "#76b7b2", "#59a14f", "#e15759",
                                        "#b07aa1", "#edc948", "#ff9da7", "#9c755f", "#bab0ac"};
  return palette[i % 10];
}

/// Text element; anchor is start, middle or end.
inline void text(std::ostream& os, double x, double y, const std::string& s, int size = 12,
                 const char* anchor = "start", const char* extra = "") {
  os << "<text x=\"" << x << "\" y=\"" << y << "\" font-size=\"" << size << "\" text-anchor=\"" << anchor
     << "\"" << extra << ">" << xml_escape(s) << "</text>\n";
}

inline void line(std::ostream& os, double x1, double y1, double x2, double y2, const char* stroke,
                 double width = 1) {
  os << "<line x1=\"" << x1 << "\" y1=\"" << y1 << "\" x2=\"" << x2 << "\" y2=\"" << y2 << "\" stroke=\""
     << stroke << "\" stroke-width=\"" << width << "\"/>\n";
}

/// Horizontal grid lines and y tick labels of a panel spanning [y_bottom, y_top] on screen.
inline void y_grid(std::ostream& os, double x0, double x1, double y_bottom, double y_top, double vmax,
                   int ticks, const std::string& unit, int decimals) {
  for (int t = 0; t <= ticks; ++t) {
    const double v = vmax * t / ticks, y = y_bottom - (y_bottom - y_top) * t / ticks;
    line(os, x0, y, x1, y, t == 0 ? "#444" : "#e3e3e3");
    std::ostringstream label;
    label.setf(std::ios::fixed);
    label.precision(decimals);
    label << v << unit;
    text(os, x0 - 6, y + 4, label.str(), 11, "end");
  }
}

}  // namespace detail

/// Writes the two-panel chart to `path`; throws std::runtime_error if it cannot be written.
inline void write_chart_svg(const std::string& path, const ChartData& d) {
  using detail::line;
  using detail::text;
  const std::size_t L = d.loss_names.size(), C = d.class_labels.size();
  const Eigen::Index E = d.loss_curves.cols();
  const double width = 1180, height = 540;

  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(1);
  os << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
     << "\" viewBox=\"0 0 " << width << " " << height << "\" font-family=\"Helvetica, Arial, sans-serif\">\n"
     << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  text(os, 20, 30, d.title, 16, "start", " font-weight=\"bold\"");

  // Legend, shared by both panels.
  double lx = 20;
  for (std::size_t l = 0; l < L; ++l) {
    os << "<rect x=\"" << lx << "\" y=\"46\" width=\"14\" height=\"14\" fill=\"" << detail::color(l) << "\"/>\n";
    text(os, lx + 19, 58, d.loss_names[l], 12);
    lx += 36 + 7.5 * double(d.loss_names[l].size());  // ~7.5 px per character at 12 px
  }

  // Panel 1: per-class recall, one group of bars per class.
  {
    const double x0 = 70, x1 = 690, top = 110, bottom = 450;
    text(os, x0, 92, "Per-class test recall (mean over seeds)", 14, "start", " font-weight=\"bold\"");
    detail::y_grid(os, x0, x1, bottom, top, 100, 5, "%", 0);
    const double group = (x1 - x0) / double(C), bar = group * 0.82 / double(L);
    for (std::size_t c = 0; c < C; ++c) {
      const double gx = x0 + group * double(c) + group * 0.09;
      for (std::size_t l = 0; l < L; ++l) {
        const double r = std::clamp(d.recall(Eigen::Index(l), Eigen::Index(c)), 0.0, 1.0);
        const double h = (bottom - top) * r, x = gx + bar * double(l);
        os << "<rect x=\"" << x << "\" y=\"" << bottom - h << "\" width=\"" << bar << "\" height=\"" << h
           << "\" fill=\"" << detail::color(l) << "\"><title>" << detail::xml_escape(d.loss_names[l])
           << ", class " << c << ": " << 100 * r << "%</title></rect>\n";
      }
      const double cx = x0 + group * (double(c) + 0.5);
      text(os, cx, bottom + 16, std::to_string(c) + " " + d.class_labels[c], 11, "middle");
      text(os, cx, bottom + 30, "n=" + std::to_string(d.class_counts[c]), 10, "middle", " fill=\"#666\"");
    }
    text(os, (x0 + x1) / 2, bottom + 50, "class (training samples per class)", 12, "middle");
  }

  // Panel 2: training-loss curves, each divided by its epoch-1 value.
  {
    const double x0 = 800, x1 = 1150, top = 110, bottom = 450;
    text(os, x0 - 40, 92, "Training loss / epoch-1 value (mean over seeds)", 14, "start", " font-weight=\"bold\"");
    text(os, x0 - 40, bottom + 58, "Each curve is divided by its own epoch-1 value:", 11, "start", " fill=\"#666\"");
    text(os, x0 - 40, bottom + 72, "the losses have different scales.", 11, "start", " fill=\"#666\"");
    Eigen::MatrixXd norm = d.loss_curves;
    for (Eigen::Index l = 0; l < norm.rows(); ++l)
      if (norm(l, 0) != 0) norm.row(l) /= norm(l, 0);
    const double vmax = std::max(1.0, std::ceil(norm.maxCoeff() * 5) / 5);  // round up to 0.2
    detail::y_grid(os, x0, x1, bottom, top, vmax, 5, "", 1);
    auto px = [&](Eigen::Index e) { return E > 1 ? x0 + (x1 - x0) * double(e) / double(E - 1) : (x0 + x1) / 2; };
    auto py = [&](double v) { return bottom - (bottom - top) * std::clamp(v / vmax, 0.0, 1.0); };
    const Eigen::Index step = std::max<Eigen::Index>(1, (E + 14) / 15);  // at most ~15 x labels
    for (Eigen::Index e = 0; e < E; ++e)
      if (e % step == 0 || e == E - 1) text(os, px(e), bottom + 16, std::to_string(e + 1), 11, "middle");
    if (d.reweighting_epoch > 0 && d.reweighting_epoch < E) {  // the DRW curve jumps there
      const double x = px(d.reweighting_epoch);
      os << "<line x1=\"" << x << "\" y1=\"" << top << "\" x2=\"" << x << "\" y2=\"" << bottom
         << "\" stroke=\"#999\" stroke-dasharray=\"4,3\"/>\n";
      text(os, x - 4, top + 12, "DRW on", 11, "end", " fill=\"#666\"");
    }
    for (Eigen::Index l = 0; l < norm.rows(); ++l) {
      os << "<polyline fill=\"none\" stroke=\"" << detail::color(std::size_t(l)) << "\" stroke-width=\"2\" points=\"";
      os.precision(2);
      for (Eigen::Index e = 0; e < E; ++e) os << px(e) << "," << py(norm(l, e)) << " ";
      os << "\"><title>" << detail::xml_escape(d.loss_names[std::size_t(l)]) << ": epoch-1 loss "
         << d.loss_curves(l, 0) << "</title></polyline>\n";
      os.precision(1);
    }
    text(os, (x0 + x1) / 2, bottom + 34, "epoch", 12, "middle");
  }
  os << "</svg>\n";

  std::ofstream file(path);
  file << os.str();
  if (!file) throw std::runtime_error("cannot write " + path);
}

}  // namespace fashion
