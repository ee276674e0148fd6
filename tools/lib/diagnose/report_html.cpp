#include "tools/lib/diagnose/report_html.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>

#include "tools/lib/diagnose/device_report.h"
#include "tools/lib/diagnose/training_view.h"
#include "tools/lib/diagnose/health_report.h"

namespace diagnose {

namespace {

std::string esc(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string num(double v, const char* format = "%.3f") { return collapse::format_number(v, format, "&ndash;"); }

std::string rgb(double r, double g, double b) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", static_cast<int>(std::clamp(r, 0.0, 1.0) * 255 + 0.5),
                static_cast<int>(std::clamp(g, 0.0, 1.0) * 255 + 0.5),
                static_cast<int>(std::clamp(b, 0.0, 1.0) * 255 + 0.5));
  return buf;
}

// Sequential white -> dark red for t in [0, 1].
std::string heat(double t) {
  t = std::clamp(t, 0.0, 1.0);
  return rgb(1.0 - 0.35 * t, 1.0 - 0.95 * t, 1.0 - 0.9 * t);
}

// Diverging blue (-1) -> white (0) -> red (+1).
std::string diverging(double v) {
  v = std::clamp(v, -1.0, 1.0);
  return v >= 0 ? rgb(1.0, 1.0 - 0.85 * v, 1.0 - 0.85 * v) : rgb(1.0 + 0.85 * v, 1.0 + 0.6 * v, 1.0);
}

const char* verdict_color(collapse::Verdict v) {
  switch (v) {
    case collapse::Verdict::healthy:
      return "#2e7d32";
    case collapse::Verdict::imbalanced:
      return "#ef6c00";
    case collapse::Verdict::collapsing:
      return "#c62828";
    case collapse::Verdict::collapsed:
      return "#6a1b1a";
  }
  return "#000";
}

std::string layer_title(const diagnose::LayerResult& lr, size_t l) {
  return "MoE layer " + std::to_string(l) + " (block " + std::to_string(lr.stats.block) + ")";
}

// Label every n-th position so labels of cells this wide never overlap.
int label_stride(double cell) { return std::max(1, static_cast<int>(std::ceil(22.0 / cell))); }

void bar_chart(std::ostream& o, const diagnose::LayerResult& lr, size_t l) {
  const collapse::LayerStats& s = lr.stats;
  const int64_t E = s.experts;
  const double bw = std::clamp(520.0 / E, 5.0, 36.0), left = 44, top = 24, plot_h = 150;
  const double width = left + bw * E + 34, height = top + plot_h + 34;
  const double uniform = 1.0 / E;
  const double ymax = std::max(*std::max_element(s.share.begin(), s.share.end()), 2 * uniform) * 1.08;
  auto y = [&](double v) { return top + plot_h * (1 - v / ymax); };
  o << "<svg class=\"chart\" data-kind=\"load\" data-layer=\"" << l << "\" width=\"" << width << "\" height=\""
    << height << "\" viewBox=\"0 0 " << width << " " << height << "\" role=\"img\"><title>" << layer_title(lr, l)
    << ": load share per expert</title>\n";
  o << "<text x=\"" << left << "\" y=\"14\" class=\"t\">" << layer_title(lr, l) << "</text>\n";
  for (double tick : {0.0, ymax / 2, ymax * 0.96})
    o << "<text x=\"" << left - 4 << "\" y=\"" << y(tick) + 4 << "\" class=\"a\" text-anchor=\"end\">"
      << num(100 * tick, "%.0f") << "%</text>\n";
  const int stride = label_stride(bw);
  for (int64_t e = 0; e < E; ++e) {
    const bool dead = std::find(s.dead.begin(), s.dead.end(), e) != s.dead.end();
    const bool starved = std::find(s.starved.begin(), s.starved.end(), e) != s.starved.end();
    const char* fill = dead ? "#c62828" : starved ? "#ef6c00" : "#1565c0";
    const double h = std::max(plot_h * s.share[e] / ymax, dead ? 1.5 : 0.0);
    o << "<rect x=\"" << left + e * bw + 0.5 << "\" y=\"" << top + plot_h - h << "\" width=\"" << std::max(bw - 1, 1.0)
      << "\" height=\"" << h << "\" fill=\"" << fill << "\"><title>expert " << e << ": " << s.counts[e] << " slots, "
      << num(100 * s.share[e], "%.1f") << "%"
      << (dead      ? " (dead)"
          : starved ? " (starved)"
                    : "")
      << "</title></rect>\n";
    if (e % stride == 0)
      o << "<text x=\"" << left + (e + 0.5) * bw << "\" y=\"" << top + plot_h + 13
        << "\" class=\"a\" text-anchor=\"middle\">" << e << "</text>\n";
  }
  o << "<line x1=\"" << left << "\" x2=\"" << left + bw * E << "\" y1=\"" << y(uniform) << "\" y2=\"" << y(uniform)
    << "\" class=\"uniform\"/>\n<text x=\"" << left + bw * E + 3 << "\" y=\"" << y(uniform) + 3
    << "\" class=\"a\" font-weight=\"600\">1/E</text>\n";
  o << "<text x=\"" << left + bw * E / 2 << "\" y=\"" << height - 4
    << "\" class=\"a\" text-anchor=\"middle\">expert</text>\n</svg>\n";
}

void history_heatmap(std::ostream& o, const diagnose::Result& r, size_t l) {
  const int64_t E = r.experts, L = static_cast<int64_t>(r.layers.size());
  const size_t n = r.history_steps.size();
  if (n == 0) return;
  const size_t columns = std::min<size_t>(n, 160);  // long histories are sampled evenly
  const double cw = std::clamp(560.0 / columns, 2.0, 24.0), ch = std::clamp(260.0 / E, 3.0, 16.0);
  const double left = 44, top = 24, width = left + cw * columns + 16, height = top + ch * E + 34;
  o << "<svg class=\"chart\" data-kind=\"history\" data-layer=\"" << l << "\" width=\"" << width << "\" height=\""
    << height << "\" viewBox=\"0 0 " << width << " " << height << "\" role=\"img\"><title>"
    << layer_title(r.layers[l], l) << ": load share per expert over training</title>\n";
  o << "<text x=\"" << left << "\" y=\"14\" class=\"t\">" << layer_title(r.layers[l], l) << "</text>\n";
  for (size_t c = 0; c < columns; ++c) {
    const size_t i = columns == n ? c : c * (n - 1) / (columns - 1);
    const int64_t* row = r.history_counts.data() + (i * L + l) * E;
    double total = 0;
    for (int64_t e = 0; e < E; ++e) total += static_cast<double>(row[e]);
    for (int64_t e = 0; e < E; ++e) {
      const double share = total > 0 ? row[e] / total : 0.0;
      o << "<rect x=\"" << left + c * cw << "\" y=\"" << top + e * ch << "\" width=\"" << cw + 0.3 << "\" height=\""
        << ch + 0.3 << "\" fill=\"" << heat(share * E / 4.0) << "\"><title>step " << r.history_steps[i] << ", expert "
        << e << ": " << num(100 * share, "%.1f") << "%</title></rect>\n";
    }
  }
  // A revival is marked on its expert's row, at the first logged step after it (the first that
  // measures the revived expert).
  for (const diagnose::Revival& v : r.revivals) {
    if (v.layer != static_cast<int64_t>(l)) continue;
    size_t c = 0;
    while (c + 1 < columns && r.history_steps[columns == n ? c : c * (n - 1) / (columns - 1)] < v.step) ++c;
    const double x = left + c * cw, y = top + (v.expert + 0.5) * ch;
    o << "<path class=\"revival\" d=\"M" << x - 5 << " " << y - 4 << " L" << x << " " << y << " L" << x - 5 << " "
      << y + 4 << " Z\"><title>step " << v.step << ": expert " << v.expert << " revived</title></path>\n";
  }
  const int ystride = label_stride(ch);
  for (int64_t e = 0; e < E; e += ystride)
    o << "<text x=\"" << left - 4 << "\" y=\"" << top + (e + 0.8) * ch << "\" class=\"a\" text-anchor=\"end\">" << e
      << "</text>\n";
  o << "<text x=\"" << left << "\" y=\"" << height - 4 << "\" class=\"a\">step " << r.history_steps.front()
    << "</text><text x=\"" << left + cw * columns << "\" y=\"" << height - 4
    << "\" class=\"a\" text-anchor=\"end\">step " << r.history_steps.back() << "</text>\n</svg>\n";
}

const char* const kLayerColors[] = {"#1565c0", "#c62828", "#2e7d32", "#ef6c00",
                                    "#6a1b9a", "#00838f", "#5d4037", "#ad1457"};

// One chart, one line per layer: values [step][layer] against the steps, y from 0 to ymax.
void line_chart(std::ostream& o, const char* kind, const std::string& title, const std::vector<int64_t>& steps,
                const std::vector<double>& values, size_t layers, double ymax) {
  const double width = 560, height = 220, left = 44, right = 110, top = 24, bottom = 28;
  const double pw = width - left - right, ph = height - top - bottom;
  const double x0 = static_cast<double>(steps.front()), x1 = std::max(static_cast<double>(steps.back()), x0 + 1);
  auto x = [&](int64_t s) { return left + pw * (static_cast<double>(s) - x0) / (x1 - x0); };
  auto y = [&](double v) { return top + ph * (1 - std::clamp(v / ymax, 0.0, 1.0)); };
  o << "<svg class=\"chart\" data-kind=\"" << kind << "\" width=\"" << width << "\" height=\"" << height
    << "\" role=\"img\"><title>" << esc(title) << "</title>\n<text x=\"" << left << "\" y=\"14\" class=\"t\">"
    << esc(title) << "</text>\n";
  for (double f : {0.0, 0.5, 1.0})
    o << "<line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << y(f * ymax) << "\" y2=\"" << y(f * ymax)
      << "\" stroke=\"#ddd\"/><text x=\"" << left - 4 << "\" y=\"" << y(f * ymax) + 3
      << "\" class=\"a\" text-anchor=\"end\">" << num(f * ymax, "%.2f") << "</text>\n";
  for (size_t l = 0; l < layers; ++l) {
    const char* color = kLayerColors[l % (sizeof kLayerColors / sizeof kLayerColors[0])];
    std::ostringstream points;
    for (size_t i = 0; i < steps.size(); ++i)
      if (std::isfinite(values[i * layers + l])) points << x(steps[i]) << "," << y(values[i * layers + l]) << " ";
    o << "<polyline data-layer=\"" << l << "\" fill=\"none\" stroke=\"" << color
      << "\" stroke-width=\"1.5\" points=\"" << points.str() << "\"/>\n<text x=\"" << left + pw + 6 << "\" y=\""
      << top + 12 * (l + 1) << "\" class=\"a\" style=\"fill:" << color << "\">layer " << l << ": "
      << num(last_of(values, layers, l), "%.3f") << "</text>\n";
  }
  o << "<text x=\"" << left << "\" y=\"" << height - 6 << "\" class=\"a\">step " << steps.front() << "</text><text x=\""
    << left + pw << "\" y=\"" << height - 6 << "\" class=\"a\" text-anchor=\"end\">step " << steps.back()
    << "</text>\n</svg>\n";
}

// The similarity of the experts and the routing churn over training, one line per layer.
void over_training(std::ostream& o, const diagnose::Result& r) {
  const size_t L = r.layers.size();
  o << "<section id=\"over-training\"><h2>Over training</h2>\n";
  if (!r.upcycled_from.empty())
    o << "<p>Upcycled from the dense checkpoint <b>" << esc(r.upcycled_from)
      << "</b>: every expert started as a copy of its layer's FFN.</p>\n";
  o << "<p class=\"legend\">Mean cosine similarity of each layer's expert weights at the logged steps (1: identical "
       "experts), and the routing churn: the share of the probe batch's tokens whose top-1 expert changed since the "
       "previous routing trace (logging.routing_trace_every).</p><div class=\"grid\">\n";
  if (!r.history_steps.empty() && r.similarity_history.size() == r.history_steps.size() * L)
    line_chart(o, "similarity-history", "mean expert similarity", r.history_steps, r.similarity_history, L, 1.0);
  else
    o << "<p>The checkpoint holds no expert similarity over training.</p>\n";
  if (!r.churn_steps.empty())
    line_chart(o, "churn", "routing churn (share of probe tokens whose top-1 changed)", r.churn_steps, r.churn, L,
               std::max(0.05, *std::max_element(r.churn.begin(), r.churn.end())));
  else
    o << "<p>No routing churn: the run kept fewer than two routing traces.</p>\n";
  o << "</div></section>\n";
}

void similarity_matrix(std::ostream& o, const diagnose::LayerResult& lr, size_t l) {
  const collapse::LayerStats& s = lr.stats;
  const int64_t E = s.experts;
  if (s.similarity.size() != static_cast<size_t>(E * E)) return;
  const double c = std::clamp(260.0 / E, 3.0, 22.0), left = 30, top = 24;
  const double width = std::max(left + c * E + 10, 300.0), height = top + c * E + 10;
  o << "<svg class=\"chart\" data-kind=\"similarity\" data-layer=\"" << l << "\" width=\"" << width << "\" height=\""
    << height << "\" viewBox=\"0 0 " << width << " " << height << "\" role=\"img\"><title>" << layer_title(lr, l)
    << ": cosine similarity of expert weights</title>\n";
  o << "<text x=\"" << left << "\" y=\"14\" class=\"t\">" << layer_title(lr, l) << ", mean "
    << num(s.mean_similarity, "%.2f") << "</text>\n";
  for (int64_t i = 0; i < E; ++i)
    for (int64_t j = 0; j < E; ++j)
      o << "<rect x=\"" << left + j * c << "\" y=\"" << top + i * c << "\" width=\"" << c + 0.3 << "\" height=\""
        << c + 0.3 << "\" fill=\"" << diverging(s.similarity[i * E + j]) << "\"><title>experts " << i << ", " << j
        << ": " << num(s.similarity[i * E + j], "%.3f") << "</title></rect>\n";
  const int stride = label_stride(c);
  for (int64_t i = 0; i < E; i += stride)
    o << "<text x=\"" << left - 3 << "\" y=\"" << top + (i + 0.8) * c << "\" class=\"a\" text-anchor=\"end\">" << i
      << "</text>\n";
  o << "</svg>\n";
}

void domain_table(std::ostream& o, const diagnose::LayerResult& lr, size_t l) {
  const collapse::LayerStats& s = lr.stats;
  if (s.domains <= 0 || s.domain_counts.empty()) return;
  o << "<div><p class=\"cap\">" << layer_title(lr, l) << ": I(domain; expert) / H(domain) = " << num(s.domain_mi)
    << "</p>\n<table class=\"domains\" data-layer=\"" << l << "\">\n<tr><th>domain</th>";
  for (int64_t e = 0; e < s.experts; ++e) o << "<th>" << e << "</th>";
  o << "</tr>\n";
  for (int64_t d = 0; d < s.domains; ++d) {
    double total = 0;
    for (int64_t e = 0; e < s.experts; ++e) total += static_cast<double>(s.domain_counts[d * s.experts + e]);
    o << "<tr><th>" << d << "</th>";
    for (int64_t e = 0; e < s.experts; ++e) {
      const int64_t v = s.domain_counts[d * s.experts + e];
      o << "<td style=\"background:" << heat(total > 0 ? v / total * s.experts / 4.0 : 0) << "\">" << v << "</td>";
    }
    o << "</tr>\n";
  }
  o << "</table></div>\n";
}

}  // namespace

// Dead experts re-initialized during training (moe.revival); a run without revival has none.
void revival_table(const diagnose::Result& r, std::ostream& o) {
  o << "<section id=\"revivals\"><h2>Dead-expert revivals</h2>\n";
  if (r.revivals.empty()) {
    o << "<p>No expert was revived during training.</p></section>\n";
    return;
  }
  o << "<p class=\"legend\">Each dead expert re-initialized (marked &#9654; on the load-over-training charts).</p>\n"
       "<table class=\"revivals\"><tr><th>step</th><th>layer</th><th>expert</th><th>mode</th><th>source</th></tr>\n";
  for (const diagnose::Revival& v : r.revivals)
    o << "<tr><td>" << v.step << "</td><td>" << v.layer << "</td><td>" << v.expert << "</td><td>"
      << (v.source < 0 ? "fresh" : "copy_busiest") << "</td><td>"
      << (v.source < 0 ? std::string("&ndash;") : std::to_string(v.source)) << "</td></tr>\n";
  o << "</table></section>\n";
}

void write_html(const diagnose::Result& r, std::ostream& o) {
  o << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>moe-diagnose: " << esc(r.checkpoint)
    << "</title>\n<style>\n"
       "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1600px}\n"
       "h1{font-size:20px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}\n"
       ".grid{display:flex;flex-wrap:wrap;gap:12px 24px;align-items:flex-start}\n"
       ".badge{display:inline-block;color:#fff;border-radius:4px;padding:1px 8px;font-weight:600}\n"
       "table{border-collapse:collapse;margin:6px 0} td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}\n"
       "td.reason{text-align:left} p.cap{font-weight:600;margin:4px 0}\n"
       "table.domains td,table.domains th{font-size:11px;padding:1px 3px;min-width:18px}\n"
       "svg .t{font-size:12px;font-weight:600} svg .a{font-size:10px;fill:#555}\n"
       "svg .uniform{stroke:#222;stroke-dasharray:4 3;stroke-width:1.2} svg .revival{fill:#0a7;stroke:#fff}\n"
       ".legend span{display:inline-block;width:12px;height:12px;margin:0 4px -2px 10px}\n"
       "</style></head><body>\n";
  o << "<section id=\"summary\"><h1>Expert-collapse report</h1>\n<p><b>" << esc(r.checkpoint) << "</b>, step " << r.step
    << "; router " << esc(r.routing) << ", E = " << r.experts << ", k = " << r.top_k << "; evaluated on " << r.batches
    << " batches (" << r.tokens << " tokens) of " << esc(r.data_description) << ".</p>\n<p>Overall: "
    << "<span class=\"badge\" style=\"background:" << verdict_color(r.overall) << "\">" << collapse::verdict_name(r.overall)
    << "</span></p></section>\n";

  const collapse::Thresholds& t = r.thresholds;
  o << "<section id=\"verdicts\"><h2>Verdicts per layer</h2>\n<table><tr><th>layer</th><th>block</th><th>verdict</th>"
       "<th>CV</th><th>MaxVio</th><th>dead</th><th>top-k share</th><th>reason</th></tr>\n";
  for (size_t l = 0; l < r.layers.size(); ++l) {
    const diagnose::LayerResult& lr = r.layers[l];
    o << "<tr><td>" << l << "</td><td>" << lr.stats.block
      << "</td><td><span class=\"badge\" style=\"background:" << verdict_color(lr.verdict.verdict) << "\">"
      << collapse::verdict_name(lr.verdict.verdict) << "</span></td><td>" << num(lr.stats.cv) << "</td><td>"
      << num(lr.stats.max_vio, "%.2f") << "</td><td>" << lr.stats.dead.size() << "</td><td>" << num(lr.stats.topk_share)
      << "</td><td class=\"reason\">" << esc(lr.verdict.reason) << "</td></tr>\n";
  }
  o << "</table>\n<p>Thresholds: collapsed when the k busiest experts take more than "
    << num(100 * t.topk_share, "%.0f")
    << "% of slots or half the experts are dead; collapsing when the load CV over training rises "
    << num(t.collapsing_growth, "%.1f") << "x to above " << num(t.collapsing_min_cv, "%.2f")
    << "; imbalanced when MaxVio &gt; " << num(t.max_vio, "%.2f") << " or more than " << t.max_dead
    << " dead experts (dead: share &lt; " << num(t.dead_fraction, "%.2g") << "/E).</p></section>\n";

  o << "<section id=\"load\"><h2>Load per expert (evaluation batches)</h2>\n<p class=\"legend\">Share of routed slots;"
       " dashed: the uniform share 1/E.<span style=\"background:#1565c0\"></span>expert"
       "<span style=\"background:#ef6c00\"></span>starved<span style=\"background:#c62828\"></span>dead</p>\n"
       "<div class=\"grid\">\n";
  for (size_t l = 0; l < r.layers.size(); ++l) bar_chart(o, r.layers[l], l);
  o << "</div></section>\n";

  write_devices_html(r, o);

  o << "<section id=\"history\"><h2>Load share over training</h2>\n<p class=\"legend\">Rows: experts; columns: logged "
       "steps; white: no slots, dark red: 4x the uniform share or more.</p><div class=\"grid\">\n";
  for (size_t l = 0; l < r.layers.size(); ++l) history_heatmap(o, r, l);
  if (r.history_steps.empty()) o << "<p>The checkpoint holds no logged steps.</p>";
  o << "</div></section>\n";

  write_health_html(r, o);
  revival_table(r, o);

  o << "<section id=\"similarity\"><h2>Expert weight similarity</h2>\n<p class=\"legend\">Cosine similarity of the "
       "experts' flattened weights: blue -1, white 0, red +1. Experts that stopped specializing look alike.</p>"
       "<div class=\"grid\">\n";
  for (size_t l = 0; l < r.layers.size(); ++l) similarity_matrix(o, r.layers[l], l);
  o << "</div></section>\n";

  over_training(o, r);

  o << "<section id=\"domains\"><h2>Domains and experts</h2>\n<p class=\"legend\">Slots per domain (rows) and "
       "expert (columns) on the evaluation batches; shading: share of the domain's slots. 1 = every domain has its "
       "own experts, 0 = routing ignores the domain.</p><div class=\"grid\">\n";
  bool any_domains = false;
  for (size_t l = 0; l < r.layers.size(); ++l) {
    domain_table(o, r.layers[l], l);
    any_domains = any_domains || r.layers[l].stats.domains > 0;
  }
  if (!any_domains) o << "<p>The evaluation data has no domain labels.</p>";
  o << "</div></section>\n";

  o << "<section id=\"spread\"><h2>Metrics across layers</h2>\n<table><tr><th>metric</th><th>min</th><th>median</th>"
       "<th>p90</th><th>max</th></tr>\n";
  for (const auto& [name, s] : r.spread)
    o << "<tr><th>" << esc(name) << "</th><td>" << num(s.min) << "</td><td>" << num(s.median) << "</td><td>"
      << num(s.p90) << "</td><td>" << num(s.max) << "</td></tr>\n";
  o << "</table></section>\n";

  if (r.compare) {
    o << "<section id=\"compare\"><h2>Compared with " << esc(r.compare->other) << " (step " << r.compare->other_step
      << ")</h2>\n<p>Top-1 expert changed for <b>" << num(100 * r.compare->top1_changed, "%.1f")
      << "%</b> of tokens.</p>\n<table><tr><th>metric</th>";
    for (size_t l = 0; l < r.compare->delta.size(); ++l) o << "<th>layer " << l << "</th>";
    o << "</tr>\n<tr><th>top-1 changed</th>";
    for (double v : r.compare->top1_changed_per_layer) o << "<td>" << num(100 * v, "%.1f") << "%</td>";
    o << "</tr>\n";
    for (size_t k = 0; k < r.compare->delta[0].size(); ++k) {
      o << "<tr><th>&Delta; " << esc(r.compare->delta[0][k].first) << "</th>";
      for (const auto& layer : r.compare->delta) o << "<td>" << num(layer[k].second, "%+.3f") << "</td>";
      o << "</tr>\n";
    }
    o << "</table></section>\n";
  }
  o << "</body></html>\n";
}

}  // namespace diagnose
