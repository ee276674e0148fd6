#include "tools/lib/diagnose/health_report.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace diagnose {

namespace {

std::string num(double v, const char* format = "%.3g") { return collapse::format_number(v, format, "&ndash;"); }

bool contains(const std::vector<int>& v, int64_t e) { return std::find(v.begin(), v.end(), e) != v.end(); }

double finite_max(const std::vector<double>& v) {
  double m = 0;
  for (double x : v)
    if (std::isfinite(x)) m = std::max(m, x);
  return m > 0 ? m : 1.0;  // an axis for all-zero values still has a height
}

void svg_open(std::ostream& o, const char* kind, size_t l, double width, double height, const std::string& title) {
  o << "<svg class=\"chart\" data-kind=\"" << kind << "\" data-layer=\"" << l << "\" width=\"" << width
    << "\" height=\"" << height << "\" viewBox=\"0 0 " << width << " " << height << "\" role=\"img\"><title>" << title
    << "</title>\n<text x=\"44\" y=\"14\" class=\"t\">" << title << "</text>\n";
}

// A starved expert's gradient norm next to the busy ones' shows whether its weights still learn.
void grad_scatter(std::ostream& o, const LayerResult& lr, size_t l) {
  const double left = 44, top = 24, w = 260, h = 160;
  const double xmax = finite_max(lr.trained_share) * 1.08, ymax = finite_max(lr.grad_norm) * 1.08;
  svg_open(o, "grad-vs-load", l, left + w + 16, top + h + 34,
           "MoE layer " + std::to_string(l) + ", step " + std::to_string(lr.health_step));
  o << "<line x1=\"" << left << "\" y1=\"" << top + h << "\" x2=\"" << left + w << "\" y2=\"" << top + h
    << "\" stroke=\"#888\"/><line x1=\"" << left << "\" y1=\"" << top << "\" x2=\"" << left << "\" y2=\"" << top + h
    << "\" stroke=\"#888\"/>\n<text x=\"" << left - 4 << "\" y=\"" << top + 4 << "\" class=\"a\" text-anchor=\"end\">"
    << num(ymax) << "</text><text x=\"" << left + w << "\" y=\"" << top + h + 13
    << "\" class=\"a\" text-anchor=\"end\">" << num(100 * xmax, "%.0f") << "%</text>\n";
  for (size_t e = 0; e < lr.grad_norm.size(); ++e) {
    const double g = std::isfinite(lr.grad_norm[e]) ? lr.grad_norm[e] : 0.0;
    const bool vanishing = contains(lr.vanishing, static_cast<int64_t>(e));
    o << "<circle class=\"point\" data-expert=\"" << e << "\" cx=\"" << left + w * lr.trained_share[e] / xmax
      << "\" cy=\"" << top + h * (1 - g / ymax) << "\" r=\"4\" fill=\"" << (vanishing ? "#c62828" : "#1565c0")
      << "\"><title>expert " << e << ": share " << num(100 * lr.trained_share[e], "%.1f") << "%, gradient norm "
      << num(lr.grad_norm[e]) << (vanishing ? " (vanishing)" : "") << "</title></circle>\n";
  }
  o << "<text x=\"" << left + w / 2 << "\" y=\"" << top + h + 28
    << "\" class=\"a\" text-anchor=\"middle\">load share (x) against gradient norm (y)</text>\n</svg>\n";
}

// One line per expert over the logged steps; a step without a value breaks the line.
void update_ratio_chart(std::ostream& o, const Result& r, size_t l) {
  const size_t n = r.history_steps.size(), L = r.layers.size(), E = static_cast<size_t>(r.experts);
  if (n == 0 || r.history_update_ratio.size() != n * L * E) return;
  const double left = 44, top = 24, w = 360, h = 160;
  double ymax = 0;
  for (size_t i = 0; i < n; ++i)
    for (size_t e = 0; e < E; ++e) {
      const double v = r.history_update_ratio[(i * L + l) * E + e];
      if (std::isfinite(v)) ymax = std::max(ymax, v);
    }
  ymax = ymax > 0 ? ymax * 1.08 : 1.0;
  svg_open(o, "update-ratio", l, left + w + 16, top + h + 34, "MoE layer " + std::to_string(l));
  o << "<text x=\"" << left - 4 << "\" y=\"" << top + 4 << "\" class=\"a\" text-anchor=\"end\">" << num(ymax)
    << "</text><text x=\"" << left - 4 << "\" y=\"" << top + h << "\" class=\"a\" text-anchor=\"end\">0</text>\n";
  const double first = static_cast<double>(r.history_steps.front()), last = static_cast<double>(r.history_steps.back());
  auto x = [&](size_t i) { return left + (last > first ? w * (r.history_steps[i] - first) / (last - first) : w / 2); };
  const LayerResult& lr = r.layers[l];
  for (size_t e = 0; e < E; ++e) {
    std::string points;
    auto flush = [&] {
      if (!points.empty())
        o << "<polyline class=\"ratio\" data-expert=\"" << e << "\" fill=\"none\" stroke=\""
          << (contains(lr.vanishing, static_cast<int64_t>(e)) ? "#c62828" : "#1565c0")
          << "\" stroke-opacity=\"0.6\" points=\"" << points << "\"><title>expert " << e << "</title></polyline>\n";
      points.clear();
    };
    for (size_t i = 0; i < n; ++i) {
      const double v = r.history_update_ratio[(i * L + l) * E + e];
      if (!std::isfinite(v)) {
        flush();
        continue;
      }
      points += (points.empty() ? "" : " ") + std::to_string(x(i)) + "," + std::to_string(top + h * (1 - v / ymax));
    }
    flush();
  }
  o << "<text x=\"" << left << "\" y=\"" << top + h + 13 << "\" class=\"a\">step " << r.history_steps.front()
    << "</text><text x=\"" << left + w << "\" y=\"" << top + h + 13 << "\" class=\"a\" text-anchor=\"end\">step "
    << r.history_steps.back() << "</text>\n</svg>\n";
}

}  // namespace

void write_health_html(const Result& r, std::ostream& o) {
  o << "<section id=\"health\"><h2>Gradients and updates per expert (training)</h2>\n";
  const bool recorded =
      std::any_of(r.layers.begin(), r.layers.end(), [](const LayerResult& lr) { return lr.health_step > 0; });
  if (!recorded) {
    o << "<p>The checkpoint's history holds no per-expert gradients (saved before they were logged).</p></section>\n";
    return;
  }
  o << "<p class=\"legend\">Each expert's load share and gradient norm (before clipping) at training's last logged "
       "step.<span style=\"background:#1565c0\"></span>expert<span style=\"background:#c62828\"></span>vanishing "
       "gradient (starved, norm &lt; "
    << num(r.thresholds.vanishing_grad_norm) << ")</p><div class=\"grid\">\n";
  for (size_t l = 0; l < r.layers.size(); ++l)
    if (r.layers[l].health_step > 0) grad_scatter(o, r.layers[l], l);
  o << "</div>\n<h3>Update-to-weight ratio over training</h3>\n<p class=\"legend\">||p<sub>after</sub> &minus; "
       "p<sub>before</sub>|| / ||p<sub>before</sub>|| of each expert's weights at each logged step, one line per "
       "expert; an expert without a gradient is not updated (0).</p><div class=\"grid\">\n";
  for (size_t l = 0; l < r.layers.size(); ++l) update_ratio_chart(o, r, l);
  o << "</div></section>\n";
}

}  // namespace diagnose
