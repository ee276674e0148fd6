#include "tools/lib/diagnose/diagnose.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "tools/lib/assemble/assemble.h"
#include "tools/lib/checkpoint/checkpoint.h"
#include "tools/lib/diagnose/device_report.h"
#include "tools/lib/diagnose/training_view.h"
#include "tools/lib/train/metrics_log.h"
#include "tools/lib/train/routing_stats.h"

namespace diagnose {

namespace rc = runconfig;

namespace {

struct Evaluation {
  std::vector<collapse::LayerStats> layers;
  std::vector<std::vector<int32_t>> top1;  // per layer, per token
  int64_t tokens = 0;
};

rc::RunConfig config_of(const ckpt::Checkpoint& c, const std::string& path) {
  rc::RunConfig cfg = rc::parse_run_config(c.config_yaml, path + ":/config");
  cfg.logging.out_dir.clear();
  cfg.device = rc::DeviceKind::cpu;
  return cfg;
}

// The data section to evaluate on: the checkpoint's own, another config's, or a file.
rc::DataConfig data_for(const rc::RunConfig& cfg, const std::string& spec, std::string* description) {
  namespace fs = std::filesystem;
  rc::DataConfig d = cfg.data;
  if (!spec.empty()) {
    const std::string ext = fs::path(spec).extension().string();
    if (!fs::exists(spec)) throw std::runtime_error("--data " + spec + ": no such file");
    if (ext == ".yaml" || ext == ".yml") {
      d = rc::load_run_config(spec).data;
    } else if (ext == ".bin") {
      d = rc::DataConfig{};
      d.kind = rc::DataKind::shards;
      d.train_shards = d.val_shards = {spec};
    } else {
      d = rc::DataConfig{};
      d.kind = rc::DataKind::text;
      d.paths = {spec};
    }
  }
  switch (d.kind) {
    case rc::DataKind::synthetic:
      *description =
          "synthetic data (" + std::to_string(d.num_domains) + " domains, seed " + std::to_string(d.seed) + ")";
      break;
    case rc::DataKind::text:
      *description = "the validation split of " + std::to_string(d.paths.size()) + " text file(s)";
      break;
    case rc::DataKind::shards:
      *description = "token shards (" + std::to_string(d.val_shards.size()) + " file(s))";
      break;
  }
  return d;
}

// cfg: the checkpoint's own config (config_of); devices: the grouping of the device metrics.
Evaluation evaluate(const std::string& path, const ckpt::Checkpoint& c, const rc::RunConfig& cfg,
                    const rc::DataConfig& data, int batches, int64_t devices) {
  moe::TransformerLM model(assemble::model_config(cfg));
  assemble::load_model(model, c, path);
  rc::RunConfig with_data = cfg;
  with_data.data = data;
  std::unique_ptr<data::TokenSource> source = assemble::data_source(with_data, true);
  if (source->vocab_size() > cfg.model.vocab_size)
    throw std::runtime_error("the evaluation data has tokens up to " + std::to_string(source->vocab_size() - 1) +
                             ", beyond the model's vocabulary of " + std::to_string(cfg.model.vocab_size));
  std::vector<moe::MoeLayer*> layers = model.moe_layers();
  const int64_t domains = data.kind == rc::DataKind::synthetic ? data.num_domains : 0;
  std::vector<train::RoutingObserver> observers;
  for (moe::MoeLayer* l : layers) observers.emplace_back(cfg.moe.num_experts, l->config().router.top_k, domains, true);
  Evaluation ev;
  engine::NoGradScope no_grad;
  for (int b = 0; b < batches; ++b) {
    data::Batch batch = source->next_batch(cfg.training.batch_size, cfg.training.seq_len);
    moe::ForwardResult out = model.forward(batch.inputs, batch.targets, false);
    for (size_t l = 0; l < out.routings.size(); ++l)
      observers[l].add(out.routings[l], batch.domains, cfg.training.seq_len);
    ev.tokens += batch.inputs.numel();
  }
  const collapse::Thresholds t = train::thresholds_from(cfg.diagnostics);
  size_t l = 0;
  for (int64_t block = 0; block < cfg.model.n_layers; ++block) {
    if (!moe::is_moe_layer(model.config(), block)) continue;
    ev.layers.push_back(observers[l].stats(block, t, devices));
    train::set_expert_similarity(ev.layers.back(), *layers[l]);
    ev.top1.push_back(observers[l].top1());
    ++l;
  }
  return ev;
}

std::string num(double v, const char* format = "%.3f") { return collapse::format_number(v, format); }

// A minimal JSON writer: objects and arrays by hand, numbers through json_number.
std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
      continue;
    }
    out += c;
  }
  return out + "\"";
}

template <class T>
std::string array(const std::vector<T>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + train::json_number(static_cast<double>(v[i]));
  return s + "]";
}

// Reads training's per-expert health at the last logged step that recorded it. moe-diagnose does
// not run a backward of its own: the gradient that matters is the one training applied, and
// the history holds it for every logged step at no cost here.
void add_expert_health(LayerResult& lr, const ckpt::MetricsHistory& h, size_t layer, int64_t top_k,
                       const collapse::Thresholds& t) {
  if (h.expert_grad_norm.empty() || static_cast<int64_t>(layer) >= h.layers) return;
  for (size_t i = h.size(); i-- > 0;) {
    const size_t from = (i * static_cast<size_t>(h.layers) + layer) * static_cast<size_t>(h.experts);
    const auto begin = h.expert_grad_norm.begin() + static_cast<std::ptrdiff_t>(from);
    if (std::isnan(*begin)) continue;  // a step logged without them (not a log step of training)
    lr.health_step = h.step[i];
    lr.grad_norm.assign(begin, begin + h.experts);
    if (!h.expert_update_ratio.empty()) {
      const auto u = h.expert_update_ratio.begin() + static_cast<std::ptrdiff_t>(from);
      lr.update_ratio.assign(u, u + h.experts);
    }
    collapse::LayerStats at;
    const int64_t* row = h.expert_counts.data() + from;
    collapse::compute_load(at, std::vector<int64_t>(row, row + h.experts), top_k, 0, t);
    lr.trained_share = at.share;
    for (int e : at.starved)
      if (lr.grad_norm[e] < t.vanishing_grad_norm) lr.vanishing.push_back(e);
    return;
  }
}

}  // namespace

Result run(const std::string& path, const Options& options) {
  if (options.batches < 1) throw std::runtime_error("--batches must be >= 1");
  const ckpt::Checkpoint c = ckpt::read_checkpoint(path);
  const rc::RunConfig cfg = config_of(c, path);
  Result r;
  r.checkpoint = path;
  r.step = c.step;
  r.router = rc::to_string(cfg.moe.router);
  r.routing = rc::describe_routing(cfg.moe);
  r.experts = cfg.moe.num_experts;
  r.top_k = cfg.moe.top_k;
  r.batches = options.batches;
  r.thresholds = train::thresholds_from(cfg.diagnostics);
  // The device metrics of each layer group the experts as --ep ranks would hold them, or as the
  // checkpoint's own run did.
  const int64_t E = cfg.moe.num_experts;
  if (options.ep < 0 || options.ep == 1)
    throw std::runtime_error("--ep must be 2 or more (the number of expert-parallel ranks to predict for), got " +
                             std::to_string(options.ep));
  if (options.ep > 0 && E % options.ep != 0)
    throw std::runtime_error("--ep " + std::to_string(options.ep) + ": the checkpoint's " + std::to_string(E) +
                             " experts cannot be split evenly over " + std::to_string(options.ep) +
                             " ranks; choose one of " + rc::divisor_list(E));
  const int64_t devices = options.ep > 0 ? options.ep : rc::device_groups(cfg);
  const rc::DataConfig data = data_for(cfg, options.data, &r.data_description);
  const Evaluation ev = evaluate(path, c, cfg, data, options.batches, devices);
  r.tokens = ev.tokens;
  if (ev.layers.empty()) throw std::runtime_error(path + ": the model has no MoE layer to diagnose");

  const ckpt::MetricsHistory& h = c.metrics;
  r.history_steps = h.step;
  r.history_counts = h.expert_counts;
  r.history_update_ratio = h.expert_update_ratio;
  for (size_t i = 0; i < h.revival_step.size(); ++i)
    r.revivals.push_back({h.revival_step[i], h.revival_layer[i], h.revival_expert[i], h.revival_source[i]});
  for (size_t l = 0; l < ev.layers.size(); ++l) {
    LayerResult lr;
    lr.stats = ev.layers[l];
    for (size_t i = 0; i < h.size() && static_cast<int64_t>(l) < h.layers; ++i) {
      const int64_t* row = h.expert_counts.data() + (i * h.layers + l) * h.experts;
      collapse::LayerStats at;
      collapse::compute_load(at, std::vector<int64_t>(row, row + h.experts), r.top_k, 0, r.thresholds);
      lr.cv_history.push_back(at.cv);
    }
    lr.verdict = collapse::judge(lr.stats, lr.cv_history, r.thresholds);
    add_expert_health(lr, h, l, r.top_k, r.thresholds);
    r.layers.push_back(std::move(lr));
  }
  std::vector<collapse::LayerVerdict> verdicts;
  for (const LayerResult& lr : r.layers) verdicts.push_back(lr.verdict);
  r.overall = collapse::worst(verdicts);
  for (const auto& [name, unused] : collapse::scalar_metrics(r.layers[0].stats)) {
    std::vector<double> values;
    for (const LayerResult& lr : r.layers)
      for (const auto& [n, v] : collapse::scalar_metrics(lr.stats))
        if (n == name) values.push_back(v);
    r.spread.emplace_back(name, collapse::spread(values));
  }

  add_device_view(r, options, h, rc::device_groups(cfg));
  add_training_view(r, c);

  if (!options.compare.empty()) {
    const ckpt::Checkpoint other = ckpt::read_checkpoint(options.compare);
    const rc::RunConfig other_cfg = config_of(other, options.compare);
    const Evaluation ov = evaluate(options.compare, other, other_cfg, data, options.batches,
                                   other_cfg.moe.num_experts % devices == 0 ? devices : 1);
    if (ov.layers.size() != ev.layers.size() || ov.layers[0].experts != ev.layers[0].experts)
      throw std::runtime_error(options.compare + ": has " + std::to_string(ov.layers.size()) + " MoE layers of " +
                               std::to_string(ov.layers[0].experts) + " experts; " + path + " has " +
                               std::to_string(ev.layers.size()) + " of " + std::to_string(ev.layers[0].experts));
    Comparison cmp;
    cmp.other = options.compare;
    cmp.other_step = other.step;
    size_t changed = 0, total = 0;
    for (size_t l = 0; l < ev.layers.size(); ++l) {
      size_t layer_changed = 0;
      const size_t n = std::min(ev.top1[l].size(), ov.top1[l].size());
      for (size_t i = 0; i < n; ++i) layer_changed += ev.top1[l][i] != ov.top1[l][i];
      cmp.top1_changed_per_layer.push_back(n ? static_cast<double>(layer_changed) / n : collapse::kNaN);
      changed += layer_changed;
      total += n;
      std::vector<std::pair<std::string, double>> delta;
      const auto mine = collapse::scalar_metrics(ev.layers[l]), theirs = collapse::scalar_metrics(ov.layers[l]);
      for (size_t k = 0; k < mine.size(); ++k) delta.emplace_back(mine[k].first, theirs[k].second - mine[k].second);
      cmp.delta.push_back(std::move(delta));
    }
    cmp.top1_changed = total ? static_cast<double>(changed) / total : collapse::kNaN;
    r.compare = std::move(cmp);
  }
  return r;
}

// The similarity's first and last logged values and the last churn, per layer.
void print_over_training(const Result& r, std::ostream& out) {
  const size_t L = r.layers.size();
  if (!r.upcycled_from.empty()) out << "\nupcycled from the dense checkpoint " << r.upcycled_from << "\n";
  if (r.similarity_history.size() == r.history_steps.size() * L && !r.history_steps.empty()) {
    out << "\nmean expert similarity over training (step " << r.history_steps.front() << " -> "
        << r.history_steps.back() << "):";
    for (size_t l = 0; l < L; ++l)
      out << (l ? ", " : " ") << "layer " << l << " " << num(r.similarity_history[l]) << " -> "
          << num(last_of(r.similarity_history, L, l));
    out << "\n";
  }
  if (r.churn_steps.empty()) {
    out << "routing churn: none recorded (logging.routing_trace_every: 0, or fewer than two traces)\n";
    return;
  }
  out << "routing churn (probe tokens whose top-1 expert changed between the last two routing traces, up to step "
      << r.churn_steps.back() << "):";
  for (size_t l = 0; l < L; ++l)
    out << (l ? ", " : " ") << "layer " << l << " " << num(100 * last_of(r.churn, L, l), "%.1f") << "%";
  out << "\n";
}

int exit_status(const Result& r) { return r.overall == collapse::Verdict::healthy ? 0 : 3; }

void print_table(const Result& r, std::ostream& out) {
  const collapse::Thresholds& t = r.thresholds;
  out << "moe-diagnose: " << r.checkpoint << " (step " << r.step << ", router " << r.routing << ", E = " << r.experts
      << ", k = " << r.top_k << ")\n";
  out << "evaluated on " << r.batches << " batches (" << r.tokens << " tokens) of " << r.data_description << "\n";
  out << "thresholds: collapsed when the k busiest experts take > " << num(t.topk_share, "%.2f")
      << " of slots or half the experts are dead; collapsing when the load CV over training rises x"
      << num(t.collapsing_growth, "%.1f") << " to > " << num(t.collapsing_min_cv, "%.2f")
      << "; imbalanced when MaxVio > " << num(t.max_vio, "%.2f") << " or more than " << t.max_dead
      << " dead experts (dead: share < " << num(t.dead_fraction, "%.2g") << "/E)\n\n";
  char line[320];
  std::snprintf(line, sizeof line, "%-5s %-5s %6s %6s %7s %5s %4s %7s %6s %6s %6s %6s %7s %6s %6s  %s\n", "layer",
                "block", "CV", "MaxVio", "entropy", "Gini", "dead", "starved", "top-k", "drop", "conf", "r.ent",
                "logits", "sim", "dom.MI", "verdict");
  out << line;
  for (size_t l = 0; l < r.layers.size(); ++l) {
    const collapse::LayerStats& s = r.layers[l].stats;
    std::snprintf(line, sizeof line, "%-5zu %-5lld %6s %6s %7s %5s %4zu %7zu %6s %6s %6s %6s %7s %6s %6s  %s\n", l,
                  static_cast<long long>(s.block), num(s.cv).c_str(), num(s.max_vio, "%.2f").c_str(),
                  num(s.entropy).c_str(), num(s.gini, "%.2f").c_str(), s.dead.size(), s.starved.size(),
                  num(s.topk_share).c_str(), num(s.dropped_fraction).c_str(), num(s.confidence).c_str(),
                  num(s.router_entropy).c_str(), num(s.logit_scale, "%.2f").c_str(), num(s.mean_similarity).c_str(),
                  num(s.domain_mi).c_str(), collapse::verdict_name(r.layers[l].verdict.verdict));
    out << line;
  }
  out << "\nacross layers:           min   median      p90      max\n";
  for (const auto& [name, s] : r.spread) {
    std::snprintf(line, sizeof line, "  %-18s %8s %8s %8s %8s\n", name.c_str(), num(s.min).c_str(),
                  num(s.median).c_str(), num(s.p90).c_str(), num(s.max).c_str());
    out << line;
  }
  print_devices(r, out);
  out << "\nvanishing gradients (starved, gradient norm < " << num(t.vanishing_grad_norm, "%.3g")
      << ", at training's last logged step):\n";
  for (size_t l = 0; l < r.layers.size(); ++l) {
    const LayerResult& lr = r.layers[l];
    out << "  layer " << l << ": ";
    if (lr.health_step == 0) {
      out << "not recorded (a checkpoint from before per-expert gradients were logged)\n";
      continue;
    }
    if (lr.vanishing.empty()) out << "none";
    for (size_t i = 0; i < lr.vanishing.size(); ++i)
      out << (i ? ", " : "") << "expert " << lr.vanishing[i] << " (share " << num(lr.trained_share[lr.vanishing[i]])
          << ", grad norm " << num(lr.grad_norm[lr.vanishing[i]], "%.3g") << ")";
    out << " (step " << lr.health_step << ")\n";
  }
  print_over_training(r, out);
  out << "\nverdicts:\n";
  for (size_t l = 0; l < r.layers.size(); ++l)
    out << "  layer " << l << " (block " << r.layers[l].stats.block
        << "): " << collapse::verdict_name(r.layers[l].verdict.verdict) << ": " << r.layers[l].verdict.reason << "\n";
  if (r.compare) {
    out << "\ncompared with " << r.compare->other << " (step " << r.compare->other_step
        << "): top-1 expert changed for " << num(100 * r.compare->top1_changed, "%.1f") << "% of tokens";
    for (size_t l = 0; l < r.compare->top1_changed_per_layer.size(); ++l)
      out << (l ? ", " : " (") << "layer " << l << ": " << num(100 * r.compare->top1_changed_per_layer[l], "%.1f")
          << "%";
    out << ")\n  change of each metric (other - this), per layer:\n";
    for (size_t k = 0; k < r.compare->delta[0].size(); ++k) {
      std::snprintf(line, sizeof line, "  %-18s", r.compare->delta[0][k].first.c_str());
      out << line;
      for (const auto& layer : r.compare->delta) out << " " << num(layer[k].second, "%+.3f");
      out << "\n";
    }
  }
  out << "\noverall: " << collapse::verdict_name(r.overall) << " (exit " << exit_status(r) << ")\n";
}

void write_json(const Result& r, std::ostream& out) {
  using train::json_number;
  out << "{\n  \"checkpoint\": " << quoted(r.checkpoint) << ",\n  \"step\": " << r.step
      << ",\n  \"router\": " << quoted(r.router) << ",\n  \"routing\": " << quoted(r.routing) << ",\n  \"experts\": " << r.experts << ",\n  \"top_k\": " << r.top_k
      << ",\n  \"data\": " << quoted(r.data_description) << ",\n  \"batches\": " << r.batches
      << ",\n  \"tokens\": " << r.tokens << ",\n  \"overall\": " << quoted(collapse::verdict_name(r.overall))
      << ",\n  \"exit_status\": " << exit_status(r)
      << ",\n  \"thresholds\": {\"max_vio\": " << json_number(r.thresholds.max_vio)
      << ", \"max_dead\": " << r.thresholds.max_dead << ", \"topk_share\": " << json_number(r.thresholds.topk_share)
      << ", \"dead_fraction\": " << json_number(r.thresholds.dead_fraction)
      << ", \"starved_fraction\": " << json_number(r.thresholds.starved_fraction)
      << ", \"collapsing_growth\": " << json_number(r.thresholds.collapsing_growth)
      << ", \"collapsing_min_cv\": " << json_number(r.thresholds.collapsing_min_cv)
      << ", \"vanishing_grad_norm\": " << json_number(r.thresholds.vanishing_grad_norm) << "},\n  \"layers\": [";
  for (size_t l = 0; l < r.layers.size(); ++l) {
    const LayerResult& lr = r.layers[l];
    const collapse::LayerStats& s = lr.stats;
    out << (l ? ",\n" : "\n") << "    {\"layer\": " << l << ", \"block\": " << s.block
        << ", \"verdict\": " << quoted(collapse::verdict_name(lr.verdict.verdict))
        << ", \"reason\": " << quoted(lr.verdict.reason);
    for (const auto& [name, v] : collapse::scalar_metrics(s)) out << ", " << quoted(name) << ": " << json_number(v);
    out << ", \"counts\": " << array(s.counts) << ", \"share\": " << array(s.share)
        << ", \"dead_experts\": " << array(s.dead) << ", \"starved_experts\": " << array(s.starved)
        << ", \"busiest\": " << array(s.busiest) << ", \"similarity\": " << array(s.similarity)
        << ", \"domains\": " << s.domains << ", \"domain_counts\": " << array(s.domain_counts)
        << ", \"cv_history\": " << array(lr.cv_history) << ", \"health_step\": " << lr.health_step
        << ", \"trained_share\": " << array(lr.trained_share) << ", \"grad_norm\": " << array(lr.grad_norm)
        << ", \"update_ratio\": " << array(lr.update_ratio) << ", \"vanishing_experts\": " << array(lr.vanishing)
        << "}";
  }
  out << "\n  ],\n  \"across_layers\": {";
  for (size_t i = 0; i < r.spread.size(); ++i) {
    const collapse::Spread& s = r.spread[i].second;
    out << (i ? ", " : "") << quoted(r.spread[i].first) << ": {\"min\": " << json_number(s.min)
        << ", \"median\": " << json_number(s.median) << ", \"p90\": " << json_number(s.p90)
        << ", \"max\": " << json_number(s.max) << "}";
  }
  out << "},\n  \"devices\": ";
  write_devices_json(r, out);
  out << ",\n  \"history\": {\"steps\": " << array(r.history_steps)
      << ", \"expert_counts\": " << array(r.history_counts) << "}";
  std::vector<double> last_churn;
  for (size_t l = 0; l < r.layers.size() && !r.churn.empty(); ++l)
    last_churn.push_back(last_of(r.churn, r.layers.size(), l));
  out << ",\n  \"over_training\": {\"upcycled_from\": " << quoted(r.upcycled_from)
      << ", \"similarity_history\": " << array(r.similarity_history) << ", \"churn_steps\": " << array(r.churn_steps)
      << ", \"churn\": " << array(r.churn) << ", \"last_churn\": " << array(last_churn) << "}";
  out << ",\n  \"revivals\": [";
  for (size_t i = 0; i < r.revivals.size(); ++i) {
    const Revival& v = r.revivals[i];
    out << (i ? ", " : "") << "{\"step\": " << v.step << ", \"layer\": " << v.layer << ", \"expert\": " << v.expert
        << ", \"source\": " << (v.source < 0 ? std::string("null") : std::to_string(v.source)) << "}";
  }
  out << "]";
  if (r.compare) {
    out << ",\n  \"compare\": {\"other\": " << quoted(r.compare->other) << ", \"other_step\": " << r.compare->other_step
        << ", \"top1_changed\": " << json_number(r.compare->top1_changed)
        << ", \"top1_changed_per_layer\": " << array(r.compare->top1_changed_per_layer) << ", \"delta\": [";
    for (size_t l = 0; l < r.compare->delta.size(); ++l) {
      out << (l ? ", " : "") << "{";
      for (size_t k = 0; k < r.compare->delta[l].size(); ++k)
        out << (k ? ", " : "") << quoted(r.compare->delta[l][k].first) << ": "
            << json_number(r.compare->delta[l][k].second);
      out << "}";
    }
    out << "]}";
  }
  out << "\n}\n";
}

}  // namespace diagnose
