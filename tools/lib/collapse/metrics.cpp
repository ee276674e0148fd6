#include "tools/lib/collapse/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "tools/lib/collapse/devices.h"

namespace collapse {

std::string format_number(double v, const char* format, const char* if_nan) {
  if (std::isnan(v)) return if_nan;
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

namespace {

std::string fmt(const char* format, double v) { return format_number(v, format); }

// Expert lists stay short enough to read: the first 12, then how many more.
std::string join(const std::vector<int>& v) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < 12; ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  if (v.size() > 12) s += " and " + std::to_string(v.size() - 12) + " more";
  return s;
}

double mean_of(const std::vector<double>& v, size_t begin, size_t end) {
  double s = 0;
  for (size_t i = begin; i < end; ++i) s += v[i];
  return end > begin ? s / static_cast<double>(end - begin) : kNaN;
}

}  // namespace

void RouterAccumulator::add(const std::vector<float>& probs, const std::vector<float>& logits, int64_t experts) {
  const size_t n = probs.size() / static_cast<size_t>(experts);
  for (size_t t = 0; t < n; ++t) {
    const float* p = probs.data() + t * experts;
    double top = 0, h = 0;
    for (int64_t e = 0; e < experts; ++e) {
      top = std::max(top, static_cast<double>(p[e]));
      if (p[e] > 0) h -= p[e] * std::log(static_cast<double>(p[e]));
    }
    max_prob += top;
    entropy += experts > 1 ? h / std::log(static_cast<double>(experts)) : 0.0;
    if (!logits.empty()) {
      const float* z = logits.data() + t * experts;
      const double zmax = *std::max_element(z, z + experts);
      double s = 0;
      for (int64_t e = 0; e < experts; ++e) s += std::exp(z[e] - zmax);
      logsumexp += zmax + std::log(s);
      has_logits = true;
    }
  }
  tokens += static_cast<double>(n);
}

void compute_load(LayerStats& s, const std::vector<int64_t>& counts, int64_t top_k, int64_t dropped,
                  const Thresholds& t) {
  const int64_t E = static_cast<int64_t>(counts.size());
  s.experts = E;
  s.top_k = top_k;
  s.counts = counts;
  const double total = static_cast<double>(std::accumulate(counts.begin(), counts.end(), int64_t{0}));
  const double mean = E > 0 ? total / static_cast<double>(E) : 0;
  s.share.assign(counts.size(), 0.0);
  double var = 0, h = 0;
  for (int64_t e = 0; e < E; ++e) {
    s.share[e] = total > 0 ? static_cast<double>(counts[e]) / total : 0.0;
    var += (counts[e] - mean) * (counts[e] - mean) / static_cast<double>(E);
    if (s.share[e] > 0) h -= s.share[e] * std::log(s.share[e]);
  }
  s.cv = mean > 0 ? std::sqrt(var) / mean : 0.0;
  s.max_vio = mean > 0 ? (static_cast<double>(*std::max_element(counts.begin(), counts.end())) - mean) / mean : 0.0;
  s.entropy = E > 1 ? h / std::log(static_cast<double>(E)) : 1.0;
  s.effective_experts = total > 0 ? std::exp(h) : 0.0;
  std::vector<int64_t> sorted = counts;
  std::sort(sorted.begin(), sorted.end());
  double g = 0;
  for (int64_t i = 0; i < E; ++i) g += static_cast<double>(2 * (i + 1) - E - 1) * static_cast<double>(sorted[i]);
  s.gini = total > 0 ? g / (static_cast<double>(E) * total) : 0.0;
  s.dead.clear();
  s.starved.clear();
  for (int64_t e = 0; e < E; ++e) {
    if (s.share[e] < t.dead_fraction / static_cast<double>(E)) s.dead.push_back(static_cast<int>(e));
    if (s.share[e] < t.starved_fraction / static_cast<double>(E)) s.starved.push_back(static_cast<int>(e));
  }
  std::vector<int> order(static_cast<size_t>(E));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return counts[a] > counts[b]; });
  order.resize(static_cast<size_t>(std::min<int64_t>(top_k, E)));
  s.busiest = order;
  double top = 0;
  for (int e : order) top += static_cast<double>(counts[e]);
  s.topk_share = total > 0 ? top / total : 0.0;
  s.dropped_fraction = total > 0 ? static_cast<double>(dropped) / total : 0.0;
}

void set_router(LayerStats& s, const RouterAccumulator& r) {
  if (r.tokens <= 0) return;
  s.confidence = r.max_prob / r.tokens;
  s.router_entropy = r.entropy / r.tokens;
  s.logit_scale = r.has_logits ? r.logsumexp / r.tokens : kNaN;
}

void set_similarity(LayerStats& s, const std::vector<double>& gram, size_t E) {
  s.similarity.assign(E * E, 1.0);
  double sum = 0;
  int pairs = 0;
  for (size_t i = 0; i < E; ++i)
    for (size_t j = i + 1; j < E; ++j) {
      const double denom = std::sqrt(gram[i * E + i] * gram[j * E + j]);
      const double c = denom > 0 ? gram[i * E + j] / denom : 0.0;
      s.similarity[i * E + j] = s.similarity[j * E + i] = c;
      sum += c;
      ++pairs;
    }
  s.mean_similarity = pairs ? sum / pairs : kNaN;
}

void set_domains(LayerStats& s, const std::vector<int64_t>& table, int64_t domains) {
  s.domains = domains;
  s.domain_counts = table;
  const int64_t E = s.experts;
  const double total = static_cast<double>(std::accumulate(table.begin(), table.end(), int64_t{0}));
  if (total <= 0 || domains < 2) return;
  std::vector<double> pd(domains, 0.0), pe(E, 0.0);
  for (int64_t d = 0; d < domains; ++d)
    for (int64_t e = 0; e < E; ++e) {
      pd[d] += table[d * E + e] / total;
      pe[e] += table[d * E + e] / total;
    }
  double hd = 0, mi = 0;
  for (double p : pd)
    if (p > 0) hd -= p * std::log(p);
  for (int64_t d = 0; d < domains; ++d)
    for (int64_t e = 0; e < E; ++e) {
      const double p = table[d * E + e] / total;
      if (p > 0) mi += p * std::log(p / (pd[d] * pe[e]));
    }
  s.domain_mi = hd > 0 ? mi / hd : kNaN;
}

std::vector<std::pair<std::string, double>> scalar_metrics(const LayerStats& s) {
  return {{"cv", s.cv},
          {"max_vio", s.max_vio},
          {"entropy", s.entropy},
          {"effective_experts", s.effective_experts},
          {"gini", s.gini},
          {"dead", static_cast<double>(s.dead.size())},
          {"starved", static_cast<double>(s.starved.size())},
          {"topk_share", s.topk_share},
          {"dropped_fraction", s.dropped_fraction},
          {"confidence", s.confidence},
          {"router_entropy", s.router_entropy},
          {"logit_scale", s.logit_scale},
          {"mean_similarity", s.mean_similarity},
          {"domain_mi", s.domain_mi},
          {"device_imbalance", s.device_imbalance},
          {"wait_share", s.wait_share},
          {"idle_share", s.idle_share}};
}

void set_devices(LayerStats& s, const std::vector<int64_t>& kept, int64_t devices) {
  s.kept = kept;
  s.devices = devices;
  s.device_slots = device_loads(kept, devices);
  s.device_imbalance = device_imbalance(s.device_slots);
}

Spread spread(std::vector<double> v) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return std::isnan(x); }), v.end());
  Spread s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  // Nearest-rank percentiles: reported values are values some layer actually has.
  auto rank = [&](double q) { return v[static_cast<size_t>(std::ceil(q * static_cast<double>(v.size()))) - 1]; };
  s.min = v.front();
  s.median = rank(0.5);
  s.p90 = rank(0.9);
  s.max = v.back();
  return s;
}

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::healthy:
      return "healthy";
    case Verdict::imbalanced:
      return "imbalanced";
    case Verdict::collapsing:
      return "collapsing";
    case Verdict::collapsed:
      return "collapsed";
  }
  return "?";
}

LayerVerdict judge(const LayerStats& s, const std::vector<double>& history, const Thresholds& t) {
  const std::string k = std::to_string(s.top_k);
  if (s.experts > s.top_k && s.topk_share > t.topk_share)
    return {Verdict::collapsed, "the " + k + " busiest experts (" + join(s.busiest) + ") take " +
                                    fmt("%.1f", 100 * s.topk_share) + "% of slots (threshold " +
                                    fmt("%.0f", 100 * t.topk_share) + "%)"};
  if (s.experts >= 4 && 2 * static_cast<int64_t>(s.dead.size()) >= s.experts)
    return {Verdict::collapsed, std::to_string(s.dead.size()) + " of " + std::to_string(s.experts) +
                                    " experts are dead (" + join(s.dead) + ")"};
  if (history.size() >= 4) {
    const size_t q = std::max<size_t>(1, history.size() / 4);
    const double early = mean_of(history, 0, q), late = mean_of(history, history.size() - q, history.size());
    if (late > t.collapsing_growth * early && late > t.collapsing_min_cv)
      return {Verdict::collapsing, "load CV rose from " + fmt("%.2f", early) + " to " + fmt("%.2f", late) +
                                       " over training (thresholds: x" + fmt("%.1f", t.collapsing_growth) + " and > " +
                                       fmt("%.2f", t.collapsing_min_cv) + ")"};
  }
  std::string why;
  if (s.max_vio > t.max_vio) why = "MaxVio " + fmt("%.2f", s.max_vio) + " > " + fmt("%.2f", t.max_vio);
  if (static_cast<int>(s.dead.size()) > t.max_dead)
    why += (why.empty() ? "" : "; ") + std::string("dead experts ") + join(s.dead);
  if (!why.empty()) return {Verdict::imbalanced, why};
  return {Verdict::healthy, "MaxVio " + fmt("%.2f", s.max_vio) + " <= " + fmt("%.2f", t.max_vio) +
                                ", no dead expert, top-" + k + " share " + fmt("%.2f", s.topk_share)};
}

Verdict worst(const std::vector<LayerVerdict>& verdicts) {
  Verdict w = Verdict::healthy;
  for (const LayerVerdict& v : verdicts) w = std::max(w, v.verdict);
  return w;
}

int crossed_thresholds(const LayerStats& s, const Thresholds& t) {
  return (s.max_vio > t.max_vio ? 1 : 0) | (static_cast<int>(s.dead.size()) > t.max_dead ? 2 : 0) |
         (s.experts > s.top_k && s.topk_share > t.topk_share ? 4 : 0) |
         (s.devices > 1 && s.device_imbalance > t.device_imbalance ? 8 : 0);
}

std::string live_warning(const LayerStats& s, const Thresholds& t) {
  const int crossed = crossed_thresholds(s, t);
  std::vector<std::string> parts;
  if (crossed & 1) parts.push_back("MaxVio " + fmt("%.2f", s.max_vio) + " > " + fmt("%.2f", t.max_vio));
  if (crossed & 2)
    parts.push_back("dead experts " + join(s.dead) + " (< " + fmt("%.2g", t.dead_fraction) + "/E of slots)");
  if (crossed & 4)
    parts.push_back("top-" + std::to_string(s.top_k) + " share " + fmt("%.2f", s.topk_share) + " > " +
                    fmt("%.2f", t.topk_share) + " (experts " + join(s.busiest) + ")");
  if (crossed & 8) {
    const auto busiest = std::max_element(s.device_slots.begin(), s.device_slots.end());
    int64_t total = 0;
    for (int64_t v : s.device_slots) total += v;
    std::string part = "device imbalance " + fmt("%.2f", s.device_imbalance) + " > " + fmt("%.2f", t.device_imbalance) +
                       " over " + std::to_string(s.devices) + " devices (device " +
                       std::to_string(busiest - s.device_slots.begin()) + " computes " +
                       fmt("%.0f", 100.0 * static_cast<double>(*busiest) / static_cast<double>(total)) +
                       "% of the slots";
    if (!std::isnan(s.wait_share)) part += "; ranks wait " + fmt("%.0f", 100.0 * s.wait_share) + "% of the step";
    parts.push_back(part + ")");
  }
  std::string line;
  for (size_t i = 0; i < parts.size(); ++i) line += (i ? "; " : "") + parts[i];
  return line;
}

}  // namespace collapse
