#include "tools/lib/inspect/inspect.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "tools/lib/collapse/metrics.h"

namespace inspect {

namespace {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string with_commas(int64_t v) {
  std::string s = std::to_string(v);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

struct TensorGroup {
  std::string pattern;  // the name with every all-digit component as *
  std::vector<int64_t> shape;
  bool same_shape = true;
  int64_t count = 0, elements = 0;
};

std::string name_pattern(const std::string& name) {
  std::string out, part;
  std::istringstream parts(name);
  while (std::getline(parts, part, '.')) {
    const bool number = !part.empty() && std::all_of(part.begin(), part.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
    out += (out.empty() ? "" : ".") + (number ? std::string("*") : part);
  }
  return out;
}

// Groups in order of first appearance.
std::vector<TensorGroup> group_tensors(const std::vector<ckpt::NamedArray>& params) {
  std::vector<TensorGroup> groups;
  std::map<std::string, size_t> index;
  for (const ckpt::NamedArray& a : params) {
    const std::string pattern = name_pattern(a.name);
    auto [it, fresh] = index.emplace(pattern, groups.size());
    if (fresh) groups.push_back({pattern, a.shape, true, 0, 0});
    TensorGroup& g = groups[it->second];
    g.same_shape = g.same_shape && g.shape == a.shape;
    ++g.count;
    g.elements += static_cast<int64_t>(a.values.size());
  }
  return groups;
}

// Load of one layer: counts, CV, MaxVio and the busiest expert's share (tools/lib/collapse).
void describe_load(const int64_t* counts, int64_t experts, std::ostream& out) {
  collapse::LayerStats s;
  collapse::compute_load(s, std::vector<int64_t>(counts, counts + experts), 1, 0, collapse::Thresholds{});
  const int busiest = s.busiest.at(0);
  char line[160];
  std::snprintf(line, sizeof line, "CV %.3f  MaxVio %.3f  busiest expert %d (%.1f%% of slots, uniform %.1f%%)\n", s.cv,
                s.max_vio, busiest, 100.0 * s.share[busiest], 100.0 / experts);
  out << line << "      counts:";
  for (int64_t e = 0; e < experts; ++e) out << " " << counts[e];
  out << "\n";
}

}  // namespace

void describe(const ckpt::Checkpoint& c, const std::string& path, std::ostream& out, const Options& options) {
  int64_t elements = 0;
  for (const ckpt::NamedArray& a : c.params) elements += static_cast<int64_t>(a.values.size());
  out << "checkpoint " << path << "\n";
  out << "  format version " << ckpt::kFormatVersion << ", written by moe-engine " << c.engine_version
      << ", complete (checksum " << ckpt::checksum(c) << " verified)\n";
  if (!c.diagnostic.empty()) out << "  DIAGNOSTIC checkpoint: training stopped: " << c.diagnostic << "\n";
  char line[200];
  std::snprintf(line, sizeof line, "  step %lld, tokens seen %s, last lr %.3e, AdamW step %lld\n",
                static_cast<long long>(c.step), with_commas(c.tokens_seen).c_str(), c.lr,
                static_cast<long long>(c.optimizer_step));
  out << line;
  out << "  parameters: " << with_commas(elements) << " in " << c.params.size() << " tensors\n";
  if (c.metrics.size() > 0) {
    std::snprintf(line, sizeof line, "  history: %zu logged steps, %zu evaluations; last loss %.4f (ce %.4f)",
                  c.metrics.size(), c.metrics.eval_step.size(), c.metrics.loss.back(), c.metrics.ce.back());
    out << line;
    if (!c.metrics.eval_loss.empty()) {
      std::snprintf(line, sizeof line, ", last eval loss %.4f", c.metrics.eval_loss.back());
      out << line;
    }
    out << "\n";
  }

  const ckpt::MetricsHistory& m = c.metrics;
  if (m.size() > 0 && m.layers > 0) {
    out << "\nexpert load at step " << m.step.back() << " (the last log step):\n";
    std::vector<int64_t> blocks;
    for (const auto& [layer, bias] : c.router_bias) blocks.push_back(layer);
    const int64_t* last = m.expert_counts.data() + (m.size() - 1) * m.layers * m.experts;
    for (int64_t l = 0; l < m.layers; ++l) {
      out << "  MoE layer " << l;
      if (l < static_cast<int64_t>(blocks.size())) out << " (block " << blocks[static_cast<size_t>(l)] << ")";
      out << ": ";
      describe_load(last + l * m.experts, m.experts, out);
    }
  }
  bool any_bias = false;
  for (const auto& [layer, bias] : c.router_bias)
    any_bias = any_bias || std::any_of(bias.begin(), bias.end(), [](float b) { return b != 0.0f; });
  if (any_bias) {
    out << "\nloss-free balancing bias:\n";
    for (const auto& [layer, bias] : c.router_bias) {
      out << "  block " << layer << ":";
      for (float b : bias) {
        std::snprintf(line, sizeof line, " %+.4f", b);
        out << line;
      }
      out << "\n";
    }
  }
  if (options.tensors == TensorListing::every) {
    out << "\ntensors (/model; /optimizer/m and /optimizer/v have the same shapes):\n";
    size_t width = 0;
    for (const ckpt::NamedArray& a : c.params) width = std::max(width, a.name.size());
    for (const ckpt::NamedArray& a : c.params) {
      std::snprintf(line, sizeof line, "  %-*s %-14s %10s\n", static_cast<int>(width), a.name.c_str(),
                    shape_str(a.shape).c_str(), with_commas(static_cast<int64_t>(a.values.size())).c_str());
      out << line;
    }
  } else if (options.tensors == TensorListing::grouped) {
    out << "\ntensors by name, layer and expert numbers as * (/optimizer/m and /v alike; --tensors lists each):\n";
    std::vector<TensorGroup> groups = group_tensors(c.params);
    size_t width = 0;
    for (const TensorGroup& g : groups) width = std::max(width, g.pattern.size());
    for (const TensorGroup& g : groups) {
      std::snprintf(line, sizeof line, "  %-*s %-14s x %-5lld %12s\n", static_cast<int>(width), g.pattern.c_str(),
                    g.same_shape ? shape_str(g.shape).c_str() : "(shapes vary)", static_cast<long long>(g.count),
                    with_commas(g.elements).c_str());
      out << line;
    }
  }
  if (options.config) {
    out << "\nconfig:\n";
    std::istringstream yaml(c.config_yaml);
    for (std::string l; std::getline(yaml, l);) out << "  " << l << "\n";
  }
}

}  // namespace inspect
