#include "tools/lib/train/metrics_log.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <sstream>
#include <stdexcept>

namespace train {

// JSON has no NaN or Infinity: such values are written as null.
std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  std::ostringstream s;
  s << std::setprecision(8) << v;
  return s.str();
}

namespace {

// Gives every logged step `ranks` entries per layer in the per-rank arrays, NaN where none was
// measured (a step from a run on fewer processes).
void widen_ranks(ckpt::MetricsHistory& h, int64_t ranks) {
  if (ranks <= h.ranks) return;
  for (std::vector<double>* column : {&h.rank_slots, &h.rank_compute_seconds, &h.rank_wait_seconds}) {
    std::vector<double> wide(h.size() * static_cast<size_t>(h.layers * ranks), collapse::kNaN);
    for (size_t row = 0; row < h.size() * static_cast<size_t>(h.layers); ++row)
      for (int64_t r = 0; r < h.ranks; ++r) wide[row * ranks + r] = (*column)[row * h.ranks + r];
    *column = std::move(wide);
  }
  h.ranks = ranks;
}

// Logged step i of a column; NaN where the history is from before the column was recorded.
double entry(const std::vector<double>& column, size_t i) { return i < column.size() ? column[i] : collapse::kNaN; }

// The per-expert health columns of the history with the LayerStats member each is recorded from.
std::vector<std::pair<const char*, std::vector<double> collapse::LayerStats::*>> expert_members() {
  return {{"grad_norm", &collapse::LayerStats::expert_grad_norm},
          {"update_ratio", &collapse::LayerStats::expert_update_ratio}};
}

template <class History>
auto expert_columns(History& h) {
  return std::vector<decltype(&h.expert_grad_norm)>{&h.expert_grad_norm, &h.expert_update_ratio};
}

// A layer metric at flat index step * layers + layer; NaN where it was not recorded.
double layer_metric(const ckpt::MetricsHistory& h, const char* name, size_t at) {
  const auto it = h.layer_metrics.find(name);
  return it != h.layer_metrics.end() && at < it->second.size() ? it->second[at] : collapse::kNaN;
}

double coefficient(const ckpt::MetricsHistory& h, const std::string& loss, size_t i) {
  const auto it = h.coefficients.find(loss);
  return it == h.coefficients.end() ? collapse::kNaN : entry(it->second, i);
}

}  // namespace

MetricsLog::MetricsLog(std::vector<std::string> term_names, int64_t layers, int64_t experts, int64_t ranks)
    : term_names_(std::move(term_names)) {
  history_.layers = layers;
  history_.experts = experts;
  history_.ranks = ranks;
}

void MetricsLog::set_history(const ckpt::MetricsHistory& h) {
  if (h.layers != history_.layers || h.experts != history_.experts)
    throw std::runtime_error("metrics history has " + std::to_string(h.layers) + " layers x " +
                             std::to_string(h.experts) + " experts, the model " + std::to_string(history_.layers) +
                             " x " + std::to_string(history_.experts));
  const int64_t ranks = std::max(history_.ranks, h.ranks);
  history_ = h;
  widen_ranks(history_, ranks);
}

bool MetricsLog::record_trace(int64_t step, int64_t tokens, int64_t k, const std::vector<int32_t>& experts) {
  ckpt::MetricsHistory& h = history_;
  if (static_cast<int64_t>(experts.size()) != h.layers * tokens * k)
    throw std::logic_error("record_trace: " + std::to_string(experts.size()) + " experts for " +
                           std::to_string(h.layers) + " layers x " + std::to_string(tokens) + " tokens x k " +
                           std::to_string(k));
  const bool restart = !h.trace_step.empty() && (h.trace_tokens != tokens || h.trace_k != k);
  if (restart) {
    h.trace_step.clear();
    h.trace_experts.clear();
  }
  h.trace_tokens = tokens;
  h.trace_k = k;
  h.trace_step.push_back(step);
  h.trace_experts.insert(h.trace_experts.end(), experts.begin(), experts.end());
  return restart;
}

void MetricsLog::open(const std::string& dir) {
  jsonl_.reset();
  csv_.reset();
  if (dir.empty()) return;
  const std::filesystem::path out(dir);
  std::filesystem::create_directories(out);
  jsonl_ = std::make_unique<fileio::TextFile>((out / "metrics.jsonl").string());
  csv_ = std::make_unique<fileio::TextFile>((out / "metrics.csv").string());
  std::ostringstream header;
  header << "step,loss,ce,lr,grad_norm,tokens_per_s,dropped";
  for (const std::string& name : term_names_) header << "," << name;
  for (const std::string& name : term_names_) header << ",coef_" << name;
  header << ",bias_update_rate";
  for (int64_t l = 0; l < history_.layers; ++l)
    for (int64_t e = 0; e < history_.experts; ++e) header << ",moe" << l << "_expert" << e;
  for (int64_t l = 0; l < history_.layers; ++l) {
    header << ",moe" << l << "_device_imbalance,moe" << l << "_wait_share";
    for (const char* what : {"slots", "compute_s", "wait_s"})
      for (int64_t r = 0; r < history_.ranks; ++r) header << ",moe" << l << "_rank" << r << "_" << what;
  }
  for (int64_t l = 0; l < history_.layers; ++l) {
    header << ",moe" << l << "_effective_experts,moe" << l << "_idle_share";
    for (const auto& [what, member] : expert_members())
      for (int64_t e = 0; e < history_.experts; ++e) header << ",moe" << l << "_expert" << e << "_" << what;
  }
  header << "\n";
  csv_->write(header.str());
  // Evaluations come right after the step they follow, as they were logged.
  // Revivals happen inside a step, so they come before its line, as they were logged.
  size_t next_eval = 0, next_revival = 0;
  for (size_t i = 0; i < history_.size(); ++i) {
    while (next_revival < history_.revival_step.size() && history_.revival_step[next_revival] <= history_.step[i])
      write_revival(next_revival++);
    write_step(i);
    while (next_eval < history_.eval_step.size() && history_.eval_step[next_eval] <= history_.step[i])
      write_eval(next_eval++);
  }
  while (next_revival < history_.revival_step.size()) write_revival(next_revival++);
  while (next_eval < history_.eval_step.size()) write_eval(next_eval++);
}

void MetricsLog::record_step(const StepMetrics& m) {
  ckpt::MetricsHistory& h = history_;
  h.step.push_back(m.step);
  h.loss.push_back(m.loss);
  h.ce.push_back(m.ce);
  h.lr.push_back(m.lr);
  h.grad_norm.push_back(m.grad_norm);
  h.tokens_per_s.push_back(m.tokens_per_second);
  h.dropped.push_back(m.dropped);
  for (const std::string& name : term_names_) {
    auto it = m.terms.find(name);
    if (it == m.terms.end()) continue;
    std::vector<double>& column = h.terms[name];
    column.resize(h.size() - 1, std::nan(""));  // a term that appears late (never, for ours) is padded
    column.push_back(it->second);
  }
  // The strength is in every row; NaN pads a history from before it was logged.
  for (const std::string& name : term_names_) {
    auto it = m.coefficients.find(name);
    std::vector<double>& column = h.coefficients[name];
    column.resize(h.size() - 1, collapse::kNaN);
    column.push_back(it == m.coefficients.end() ? collapse::kNaN : it->second);
  }
  h.bias_update_rate.resize(h.size() - 1, collapse::kNaN);
  h.bias_update_rate.push_back(m.bias_update_rate);
  for (int64_t l = 0; l < h.layers; ++l)
    for (int64_t e = 0; e < h.experts; ++e) h.expert_counts.push_back(m.counts.at(l).at(e));
  if (static_cast<int64_t>(m.layers.size()) == h.layers && h.layers > 0)
    for (const collapse::LayerStats& s : m.layers)
      for (const auto& [name, value] : collapse::scalar_metrics(s)) {
        std::vector<double>& column = h.layer_metrics[name];
        column.resize((h.size() - 1) * h.layers + (&s - m.layers.data()), collapse::kNaN);
        column.push_back(value);
      }
  for (auto& [name, column] : h.layer_metrics) column.resize(h.size() * h.layers, collapse::kNaN);  // a step without them
  // Per-rank expert load: NaN for a step without it, or for ranks a step did not have.
  if (!m.layers.empty()) widen_ranks(h, static_cast<int64_t>(m.layers.front().rank_slots.size()));
  const std::pair<std::vector<double>*, std::vector<double> collapse::LayerStats::*> per_rank[] = {
      {&h.rank_slots, &collapse::LayerStats::rank_slots},
      {&h.rank_compute_seconds, &collapse::LayerStats::rank_compute_seconds},
      {&h.rank_wait_seconds, &collapse::LayerStats::rank_wait_seconds}};
  for (const auto& [column, member] : per_rank)
    for (int64_t l = 0; l < h.layers; ++l)
      for (int64_t r = 0; r < h.ranks; ++r) {
        const std::vector<double>* measured =
            static_cast<int64_t>(m.layers.size()) == h.layers ? &(m.layers[l].*member) : nullptr;
        column->push_back(measured && r < static_cast<int64_t>(measured->size()) ? (*measured)[r] : collapse::kNaN);
      }
  // Per-expert health: NaN for a step without it; a history that never had it stays without.
  const auto members = expert_members();
  const auto columns = expert_columns(h);
  const size_t per_step = static_cast<size_t>(h.layers * h.experts);
  for (size_t k = 0; k < members.size(); ++k) {
    const auto member = members[k].second;
    const bool measured = static_cast<int64_t>(m.layers.size()) == h.layers && h.layers > 0 &&
                          static_cast<int64_t>((m.layers.front().*member).size()) == h.experts;
    if (!measured && columns[k]->empty()) continue;
    columns[k]->resize((h.size() - 1) * per_step, collapse::kNaN);
    for (int64_t l = 0; l < h.layers; ++l)
      for (int64_t e = 0; e < h.experts; ++e) columns[k]->push_back(measured ? (m.layers[l].*member)[e] : collapse::kNaN);
  }
  if (jsonl_) write_step(h.size() - 1);
}

void MetricsLog::record_eval(int64_t step, double loss) {
  history_.eval_step.push_back(step);
  history_.eval_loss.push_back(loss);
  if (jsonl_) write_eval(history_.eval_step.size() - 1);
}

// Each record is formatted in memory and written with one checked write per file.
void MetricsLog::record_revival(const RevivalEvent& e) {
  history_.revival_step.push_back(e.step);
  history_.revival_layer.push_back(e.layer);
  history_.revival_expert.push_back(e.expert);
  history_.revival_source.push_back(e.source);
  if (jsonl_) write_revival(history_.revival_step.size() - 1);
}

void MetricsLog::write_revival(size_t i) {
  const int64_t source = history_.revival_source[i];
  std::ostringstream line;
  line << "{\"event\": \"revival\", \"step\": " << history_.revival_step[i] << ", \"layer\": " << history_.revival_layer[i]
       << ", \"expert\": " << history_.revival_expert[i] << ", \"mode\": \""
       << (source < 0 ? "fresh" : "copy_busiest") << "\", \"source\": "
       << (source < 0 ? std::string("null") : std::to_string(source)) << "}\n";
  jsonl_->write(line.str());
}

void MetricsLog::write_step(size_t i) {
  const ckpt::MetricsHistory& h = history_;
  std::ostringstream j;
  j << std::setprecision(8) << "{\"step\": " << h.step[i] << ", \"loss\": " << h.loss[i] << ", \"ce\": " << h.ce[i]
    << ", \"lr\": " << h.lr[i] << ", \"grad_norm\": " << h.grad_norm[i] << ", \"tokens_per_s\": " << h.tokens_per_s[i]
    << ", \"dropped\": " << h.dropped[i] << ", \"terms\": {";
  bool first = true;
  for (const auto& [name, column] : h.terms) {
    j << (first ? "" : ", ") << "\"" << name << "\": " << json_number(column[i]);
    first = false;
  }
  j << "}, \"coefficients\": {";
  for (const std::string& name : term_names_)
    j << (&name == term_names_.data() ? "" : ", ") << "\"" << name << "\": " << json_number(coefficient(h, name, i));
  j << "}, \"bias_update_rate\": " << json_number(entry(h.bias_update_rate, i)) << ", \"expert_counts\": [";
  const int64_t* counts = h.expert_counts.data() + i * h.layers * h.experts;
  for (int64_t l = 0; l < h.layers; ++l) {
    j << (l ? ", " : "") << "[";
    for (int64_t e = 0; e < h.experts; ++e) j << (e ? ", " : "") << counts[l * h.experts + e];
    j << "]";
  }
  j << "]";
  if (!h.layer_metrics.empty()) {
    j << ", \"layers\": [";
    for (int64_t l = 0; l < h.layers; ++l) {
      j << (l ? ", " : "") << "{";
      bool first_metric = true;
      for (const auto& [name, column] : h.layer_metrics) {
        const size_t at = i * static_cast<size_t>(h.layers) + static_cast<size_t>(l);
        j << (first_metric ? "" : ", ") << "\"" << name << "\": " << json_number(at < column.size() ? column[at] : NAN);
        first_metric = false;
      }
      if (h.ranks > 0) {
        const size_t from = (i * static_cast<size_t>(h.layers) + static_cast<size_t>(l)) * static_cast<size_t>(h.ranks);
        const std::pair<const char*, const std::vector<double>*> per_rank[] = {
            {"rank_slots", &h.rank_slots}, {"rank_compute_s", &h.rank_compute_seconds}, {"rank_wait_s", &h.rank_wait_seconds}};
        for (const auto& [key, column] : per_rank) {
          j << (first_metric ? "" : ", ") << "\"" << key << "\": [";
          for (int64_t r = 0; r < h.ranks; ++r) j << (r ? ", " : "") << json_number((*column)[from + r]);
          j << "]";
          first_metric = false;
        }
      }
      const auto names = expert_members();
      const auto columns = expert_columns(h);
      for (size_t k = 0; k < names.size(); ++k) {
        if (columns[k]->empty()) continue;
        j << (first_metric ? "" : ", ") << "\"expert_" << names[k].first << "\": [";
        const size_t from = (i * static_cast<size_t>(h.layers) + static_cast<size_t>(l)) * static_cast<size_t>(h.experts);
        for (int64_t e = 0; e < h.experts; ++e) j << (e ? ", " : "") << json_number((*columns[k])[from + e]);
        j << "]";
        first_metric = false;
      }
      j << "}";
    }
    j << "], \"across_layers\": {";
    bool first_metric = true;
    for (const auto& [name, column] : h.layer_metrics) {
      const auto begin = column.begin() + static_cast<std::ptrdiff_t>(i * h.layers);
      const collapse::Spread s = collapse::spread(std::vector<double>(begin, begin + h.layers));
      j << (first_metric ? "" : ", ") << "\"" << name << "\": {\"min\": " << json_number(s.min)
        << ", \"median\": " << json_number(s.median) << ", \"p90\": " << json_number(s.p90)
        << ", \"max\": " << json_number(s.max) << "}";
      first_metric = false;
    }
    j << "}";
  }
  j << "}\n";
  jsonl_->write(j.str());

  std::ostringstream c;
  c << std::setprecision(8) << h.step[i] << "," << h.loss[i] << "," << h.ce[i] << "," << h.lr[i] << ","
    << h.grad_norm[i] << "," << h.tokens_per_s[i] << "," << h.dropped[i];
  for (const std::string& name : term_names_) {
    auto it = h.terms.find(name);
    c << ",";
    if (it != h.terms.end()) c << it->second[i];
  }
  auto cell = [&c](double v) { c << ","; if (std::isfinite(v)) c << v; };
  for (const std::string& name : term_names_) cell(coefficient(h, name, i));
  cell(entry(h.bias_update_rate, i));
  for (int64_t k = 0; k < h.layers * h.experts; ++k) c << "," << counts[k];
  for (int64_t l = 0; l < h.layers; ++l) {
    const size_t at = i * static_cast<size_t>(h.layers) + static_cast<size_t>(l);
    for (const char* name : {"device_imbalance", "wait_share"}) cell(layer_metric(h, name, at));
    for (const std::vector<double>* column : {&h.rank_slots, &h.rank_compute_seconds, &h.rank_wait_seconds})
      for (int64_t r = 0; r < h.ranks; ++r) cell((*column)[at * static_cast<size_t>(h.ranks) + r]);
  }
  for (int64_t l = 0; l < h.layers; ++l) {
    const size_t at = i * static_cast<size_t>(h.layers) + static_cast<size_t>(l);
    for (const char* name : {"effective_experts", "idle_share"}) cell(layer_metric(h, name, at));
    for (const std::vector<double>* column : expert_columns(h))
      for (int64_t e = 0; e < h.experts; ++e)
        cell(column->empty() ? collapse::kNaN : (*column)[at * static_cast<size_t>(h.experts) + e]);
  }
  c << "\n";
  csv_->write(c.str());
}

void MetricsLog::write_eval(size_t i) {
  std::ostringstream line;
  line << "{\"step\": " << history_.eval_step[i] << ", \"eval_loss\": " << json_number(history_.eval_loss[i])
       << ", \"eval_perplexity\": " << json_number(std::exp(history_.eval_loss[i])) << "}\n";
  jsonl_->write(line.str());
}

}  // namespace train
