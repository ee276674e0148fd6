// The run's metrics: an in-memory history (what checkpoints store under /metrics) and its two
// file views, DIR/metrics.jsonl and DIR/metrics.csv, one line per logged step (csv) or per
// logged step and evaluation (jsonl). Both files are always a rendering of the history: a
// resumed run rewrites them from the checkpoint's history, so lines logged after that
// checkpoint by the interrupted run do not appear twice. Every write is checked: a failure
// (a full disk) throws fileio::WriteError naming the file and the system's reason.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tools/lib/checkpoint/checkpoint.h"
#include "tools/lib/collapse/metrics.h"
#include "tools/lib/fileio/fileio.h"

namespace train {

struct StepMetrics {
  int64_t step = 0;
  double loss = 0, ce = 0, lr = 0, grad_norm = 0, tokens_per_second = 0;
  std::map<std::string, double> terms;  // balance terms, averaged over micro-batches
  // The balancing strength in force (moe.losses.* and moe.bias_update_rate may be schedules).
  std::map<std::string, double> coefficients;  // balance loss -> its coefficient
  double bias_update_rate = 0;
  std::vector<std::vector<int64_t>> counts;  // [MoE layer][expert], summed over micro-batches
  std::vector<std::vector<int64_t>> kept;    // the slots each expert computed (after capacity drops), likewise
  int64_t dropped = 0;
  std::vector<collapse::LayerStats> layers;  // collapse metrics per MoE layer (log steps only)
};

// A dead expert re-initialized after `step` (tools/lib/train/revival.h); source: the expert it
// was copied from, -1 when it was drawn fresh.
struct RevivalEvent {
  int64_t step = 0, layer = 0, expert = 0, source = -1;
};

std::string json_number(double v);  // finite: the number; NaN or Inf: null

class MetricsLog {
 public:
  // term_names: every balance term in log order (csv columns, for the terms and for their
  // coefficients, coef_NAME, then bias_update_rate); layers x experts: the counts;
  // ranks: the processes whose expert load is recorded per layer (csv columns).
  MetricsLog(std::vector<std::string> term_names, int64_t layers, int64_t experts, int64_t ranks = 1);

  // Starts writing the files into `dir` (empty: keep the history only), rendering what the
  // history already holds.
  void open(const std::string& dir);
  void record_step(const StepMetrics& m);
  void record_eval(int64_t step, double loss);
  // A routing trace (tools/lib/train/routing_trace.h): experts [layer][token][k]. A trace of
  // another probe shape than the history's replaces the earlier ones (returns true then): churn
  // compares the same tokens only.
  bool record_trace(int64_t step, int64_t tokens, int64_t k, const std::vector<int32_t>& experts);

  // One jsonl line {"event": "revival", ...}; the csv keeps its one row per logged step.
  void record_revival(const RevivalEvent& e);

  const ckpt::MetricsHistory& history() const { return history_; }
  // Throws when its layers or experts differ; a history of fewer ranks is widened (NaN).
  void set_history(const ckpt::MetricsHistory& h);

 private:
  void write_step(size_t index);
  void write_eval(size_t index);
  void write_revival(size_t index);

  std::vector<std::string> term_names_;
  ckpt::MetricsHistory history_;
  std::unique_ptr<fileio::TextFile> jsonl_, csv_;
};

}  // namespace train
