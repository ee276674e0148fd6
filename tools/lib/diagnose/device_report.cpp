#include "tools/lib/diagnose/device_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "tools/lib/collapse/devices.h"
#include "tools/lib/train/metrics_log.h"

namespace diagnose {

namespace {

std::string num(double v, const char* format = "%.2f", const char* if_nan = "-") {
  return collapse::format_number(v, format, if_nan);
}

template <class T>
std::string json_array(const std::vector<T>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + train::json_number(static_cast<double>(v[i]));
  return s + "]";
}

// The prediction the charts show: --ep when given, else the most ranks of the report's counts.
const DevicePrediction* charted(const Result& r) { return r.devices.empty() ? nullptr : &r.devices.front(); }

// The predictions in table order: fewest ranks first.
std::vector<const DevicePrediction*> sorted_by_ranks(const Result& r) {
  std::vector<const DevicePrediction*> out;
  for (const DevicePrediction& p : r.devices) out.push_back(&p);
  std::sort(out.begin(), out.end(),
            [](const DevicePrediction* a, const DevicePrediction* b) { return a->ranks < b->ranks; });
  return out;
}

}  // namespace

DevicePrediction predict_devices(const std::vector<LayerResult>& layers, int64_t ranks) {
  DevicePrediction p;
  p.ranks = ranks;
  std::vector<std::vector<double>> as_doubles;
  for (const LayerResult& lr : layers) {
    std::vector<int64_t> loads;
    try {
      loads = collapse::device_loads(lr.stats.kept, ranks);
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error("--ep " + std::to_string(ranks) + ": " + e.what());
    }
    p.slowdown.push_back(collapse::device_imbalance(loads));
    as_doubles.emplace_back(loads.begin(), loads.end());
    p.loads.push_back(std::move(loads));
  }
  p.overall = collapse::combined_imbalance(as_doubles);
  return p;
}

void add_device_view(Result& r, const Options& options, const ckpt::MetricsHistory& h, int64_t trained_devices) {
  std::vector<int64_t> counts;
  if (options.ep > 0) counts.push_back(options.ep);
  for (int64_t n : collapse::report_device_counts(r.experts))
    if (n != options.ep) counts.push_back(n);
  // The report's counts follow --ep in the table; the charts show the first, so without --ep the
  // most ranks (the most imbalance to see).
  if (options.ep == 0) std::reverse(counts.begin(), counts.end());
  for (int64_t n : counts) r.devices.push_back(predict_devices(r.layers, n));

  const auto imbalance = h.layer_metrics.find("device_imbalance");
  if (trained_devices > 1 && h.size() > 0 && imbalance != h.layer_metrics.end()) {
    MeasuredDevices m;
    m.step = h.step.back();
    m.devices = trained_devices;
    m.ranks = h.ranks;
    const auto wait = h.layer_metrics.find("wait_share");
    const size_t row = (h.size() - 1) * static_cast<size_t>(h.layers);
    for (int64_t l = 0; l < h.layers; ++l) {
      m.imbalance.push_back(imbalance->second[row + l]);
      m.wait_share.push_back(wait != h.layer_metrics.end() ? wait->second[row + l] : collapse::kNaN);
    }
    r.measured = m;
  }
}

void print_devices(const Result& r, std::ostream& out) {
  if (r.devices.empty()) {
    out << "\ndevices: none of 2, 4, 8 divides E = " << r.experts << " (choose a number of ranks with --ep)\n";
    return;
  }
  const std::vector<const DevicePrediction*> by_ranks = sorted_by_ranks(r);
  out << "\npredicted slowdown of each layer's expert work on N expert-parallel ranks against a balanced step\n"
         "(the busiest rank's kept slots over the mean; 1 = balanced, N = every slot on one rank):\n";
  out << "layer block";
  for (const DevicePrediction* p : by_ranks)
    out << std::string(std::max<size_t>(1, 9 - std::to_string(p->ranks).size()), ' ') << "N=" << p->ranks;
  out << "\n";
  char cell[64];
  for (size_t l = 0; l < r.layers.size(); ++l) {
    std::snprintf(cell, sizeof cell, "%-5zu %-5lld", l, static_cast<long long>(r.layers[l].stats.block));
    out << cell;
    for (const DevicePrediction* p : by_ranks) {
      std::snprintf(cell, sizeof cell, " %10s", (num(p->slowdown[l]) + "x").c_str());
      out << cell;
    }
    out << "\n";
  }
  out << "all layers ";
  for (const DevicePrediction* p : by_ranks) {
    std::snprintf(cell, sizeof cell, " %10s", (num(p->overall) + "x").c_str());
    out << cell;
  }
  out << "\n";
  const DevicePrediction& ep = r.devices.front();
  if (ep.ranks > 1 && static_cast<int64_t>(ep.loads.front().size()) <= 16) {
    out << "\nkept slots per rank at N = " << ep.ranks << " (rank q holds experts "
        << "[q*" << r.experts / ep.ranks << ", (q+1)*" << r.experts / ep.ranks << ")):\nlayer block";
    for (int64_t q = 0; q < ep.ranks; ++q) {
      std::snprintf(cell, sizeof cell, " %7s", ("rank" + std::to_string(q)).c_str());
      out << cell;
    }
    out << "  slowdown\n";
    for (size_t l = 0; l < r.layers.size(); ++l) {
      std::snprintf(cell, sizeof cell, "%-5zu %-5lld", l, static_cast<long long>(r.layers[l].stats.block));
      out << cell;
      for (int64_t v : ep.loads[l]) {
        std::snprintf(cell, sizeof cell, " %7lld", static_cast<long long>(v));
        out << cell;
      }
      out << "  " << num(ep.slowdown[l]) << "x\n";
    }
  }
  if (r.measured) {
    const MeasuredDevices& m = *r.measured;
    out << "\nmeasured in training at step " << m.step << " over " << m.devices << " devices on " << m.ranks
        << (m.ranks == 1 ? " rank" : " ranks")
        << " (device imbalance of the training batch; share of the step spent waiting for the slowest rank):\n";
    for (size_t l = 0; l < m.imbalance.size(); ++l) {
      out << "  layer " << l << ": device imbalance " << num(m.imbalance[l]) << "x";
      if (!std::isnan(m.wait_share[l])) out << ", waiting " << num(100 * m.wait_share[l], "%.1f") << "%";
      out << "\n";
    }
  }
}

void write_devices_json(const Result& r, std::ostream& out) {
  out << "{\"predicted\": [";
  for (size_t i = 0; i < r.devices.size(); ++i) {
    const DevicePrediction& p = r.devices[i];
    out << (i ? ", " : "") << "{\"ranks\": " << p.ranks << ", \"slowdown\": " << json_array(p.slowdown)
        << ", \"overall\": " << train::json_number(p.overall) << ", \"loads\": [";
    for (size_t l = 0; l < p.loads.size(); ++l) out << (l ? ", " : "") << json_array(p.loads[l]);
    out << "]}";
  }
  out << "]";
  if (r.measured)
    out << ", \"measured\": {\"step\": " << r.measured->step << ", \"devices\": " << r.measured->devices
        << ", \"ranks\": " << r.measured->ranks << ", \"imbalance\": " << json_array(r.measured->imbalance)
        << ", \"wait_share\": " << json_array(r.measured->wait_share) << "}";
  out << "}";
}

namespace {

// One layer's slots per rank as bars, against the even share (dashed).
void rank_bars(std::ostream& o, const Result& r, const DevicePrediction& p, size_t l, double threshold) {
  const std::vector<int64_t>& loads = p.loads[l];
  const int64_t N = p.ranks;
  double total = 0, most = 0;
  for (int64_t v : loads) {
    total += static_cast<double>(v);
    most = std::max(most, static_cast<double>(v));
  }
  const double even = 1.0 / static_cast<double>(N);
  const double ymax = std::max(total > 0 ? most / total : 0.0, 2 * even) * 1.08;
  const double bw = std::clamp(300.0 / static_cast<double>(N), 6.0, 48.0), left = 44, top = 24, plot_h = 120;
  const double width = std::max(left + bw * static_cast<double>(N) + 46, 320.0), height = top + plot_h + 34;
  auto y = [&](double v) { return top + plot_h * (1 - v / ymax); };
  const std::string title = "MoE layer " + std::to_string(l) + " (block " + std::to_string(r.layers[l].stats.block) +
                            "): " + num(p.slowdown[l]) + "x on " + std::to_string(N) + " ranks";
  o << "<svg class=\"chart\" data-kind=\"devices\" data-layer=\"" << l << "\" width=\"" << width << "\" height=\""
    << height << "\" viewBox=\"0 0 " << width << " " << height << "\" role=\"img\"><title>" << title
    << "</title>\n<text x=\"" << left << "\" y=\"14\" class=\"t\">" << title << "</text>\n";
  for (double tick : {0.0, ymax / 2, ymax * 0.96})
    o << "<text x=\"" << left - 4 << "\" y=\"" << y(tick) + 4 << "\" class=\"a\" text-anchor=\"end\">"
      << num(100 * tick, "%.0f") << "%</text>\n";
  for (int64_t q = 0; q < N; ++q) {
    const double share = total > 0 ? static_cast<double>(loads[q]) / total : 0.0;
    const bool over = share > threshold * even;
    const double h = plot_h * share / ymax;
    o << "<rect x=\"" << left + q * bw + 0.5 << "\" y=\"" << top + plot_h - h << "\" width=\"" << std::max(bw - 1, 1.0)
      << "\" height=\"" << h << "\" fill=\"" << (over ? "#c62828" : "#1565c0") << "\"><title>rank " << q << ": "
      << loads[q] << " slots, " << num(100 * share, "%.1f") << "% (" << num(share / even) << "x the even share)"
      << "</title></rect>\n";
    if (N <= 16 || q % (N / 8) == 0)
      o << "<text x=\"" << left + (q + 0.5) * bw << "\" y=\"" << top + plot_h + 13
        << "\" class=\"a\" text-anchor=\"middle\">" << q << "</text>\n";
  }
  o << "<line x1=\"" << left << "\" x2=\"" << left + bw * N << "\" y1=\"" << y(even) << "\" y2=\"" << y(even)
    << "\" class=\"uniform\"/>\n<text x=\"" << left + bw * N + 3 << "\" y=\"" << y(even) + 3
    << "\" class=\"a\" font-weight=\"600\">1/" << N << "</text>\n<text x=\"" << left + bw * N / 2 << "\" y=\""
    << height - 4 << "\" class=\"a\" text-anchor=\"middle\">rank</text>\n</svg>\n";
}

}  // namespace

void write_devices_html(const Result& r, std::ostream& o) {
  o << "<section id=\"devices\"><h2>Devices: the cost of imbalance under expert parallelism</h2>\n";
  const DevicePrediction* shown = charted(r);
  if (!shown) {
    o << "<p>None of 2, 4, 8 divides E = " << r.experts << "; <code>moe-diagnose --ep N</code> predicts for N ranks "
      << "that do.</p></section>\n";
    return;
  }
  o << "<p>The experts grouped as N expert-parallel ranks hold them (rank q: experts [q&middot;E/N, "
       "(q+1)&middot;E/N)), with the slots the evaluation batches kept on each. The exchange after the experts "
       "waits for the busiest rank, so a layer's expert work is slower than in a balanced step by the busiest "
       "rank's slots over the mean: the predicted slowdown. It covers the expert work only; attention, the "
       "router and the exchanges do not grow with it, so a whole step slows by less.</p>\n"
    << "<table><tr><th>layer</th><th>block</th>";
  const std::vector<const DevicePrediction*> by_ranks = sorted_by_ranks(r);
  for (const DevicePrediction* p : by_ranks) o << "<th>N = " << p->ranks << "</th>";
  if (r.measured) o << "<th>measured, " << r.measured->devices << " devices</th><th>waiting</th>";
  o << "</tr>\n";
  const double threshold = r.thresholds.device_imbalance;
  auto cell = [&](double v) {
    o << "<td" << (v > threshold ? " style=\"background:#fde0dc\"" : "") << ">" << num(v) << "&times;</td>";
  };
  for (size_t l = 0; l < r.layers.size(); ++l) {
    o << "<tr><td>" << l << "</td><td>" << r.layers[l].stats.block << "</td>";
    for (const DevicePrediction* p : by_ranks) cell(p->slowdown[l]);
    if (r.measured) {
      cell(l < r.measured->imbalance.size() ? r.measured->imbalance[l] : collapse::kNaN);
      o << "<td>" << num(100 * (l < r.measured->wait_share.size() ? r.measured->wait_share[l] : collapse::kNaN), "%.1f")
        << "%</td>";
    }
    o << "</tr>\n";
  }
  o << "<tr><th colspan=\"2\">all layers</th>";
  for (const DevicePrediction* p : by_ranks) cell(p->overall);
  if (r.measured) o << "<td></td><td></td>";
  o << "</tr></table>\n<p class=\"legend\">Shaded: above the warning threshold "
    << "<code>diagnostics.device_imbalance</code> = " << num(threshold) << ".";
  if (r.measured)
    o << " Measured: the device imbalance of the training batch at step " << r.measured->step
      << " and the share of that step the ranks spent waiting for the slowest one.";
  o << "</p>\n<p class=\"legend\">Slots per rank at N = " << shown->ranks
    << "; dashed: the even share 1/N.<span style=\"background:#1565c0\"></span>rank"
    << "<span style=\"background:#c62828\"></span>above the threshold</p>\n<div class=\"grid\">\n";
  for (size_t l = 0; l < r.layers.size(); ++l) rank_bars(o, r, *shown, l, threshold);
  o << "</div></section>\n";
}

}  // namespace diagnose
