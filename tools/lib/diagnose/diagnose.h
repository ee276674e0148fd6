// moe-diagnose's library: runs a checkpoint's model on evaluation batches, computes every
// collapse metric per MoE layer, reads the training history stored in the checkpoint, and
// judges each layer (healthy, imbalanced, collapsing, collapsed) with the config's thresholds.
// Optionally compares with a second checkpoint on the same batches (routing stability).
#pragma once
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "tools/lib/collapse/metrics.h"

namespace diagnose {

struct Options {
  std::string data;  // empty: the checkpoint's own data config; a .yaml config; a token shard (.bin); a text file
  int batches = 8;
  std::string compare;  // a second checkpoint, or empty
  int64_t ep = 0;       // --ep N: the devices of N expert-parallel ranks (must divide E); 0: the report's 2, 4, 8
};

// The experts as `ranks` expert-parallel ranks hold them (contiguous blocks), with the slots the
// evaluation batches kept on each (tools/lib/collapse/devices.h).
struct DevicePrediction {
  int64_t ranks = 0;
  std::vector<std::vector<int64_t>> loads;  // [layer][rank]
  std::vector<double> slowdown;             // [layer]: the busiest rank's slots over the mean
  // The model's expert work, layer after layer, each waiting for its busiest rank: the sum over
  // layers of the busiest rank's slots over the sum of the means.
  double overall = collapse::kNaN;
};

// What training measured at the last logged step, from the checkpoint's history: the device
// imbalance for its own grouping (moe.device_groups, by default its expert-parallel ranks) and,
// on several ranks, the share of the step they waited.
struct MeasuredDevices {
  int64_t step = 0, devices = 0, ranks = 0;
  std::vector<double> imbalance, wait_share;  // [layer]
};

struct LayerResult {
  collapse::LayerStats stats;  // on the evaluation batches
  collapse::LayerVerdict verdict;
  std::vector<double> cv_history;  // load CV at each logged training step
  // What training measured per expert at its last logged step (health_step; 0: the checkpoint's
  // history has no per-expert gradients: an older file). The load share is that step's too, so
  // the gradient is judged against the load that produced it, not the evaluation batches'.
  int64_t health_step = 0;
  std::vector<double> trained_share, grad_norm, update_ratio;  // [expert]
  // Starved at health_step with a gradient norm below diagnostics.vanishing_grad_norm.
  std::vector<int> vanishing;
};

struct Comparison {
  std::string other;
  int64_t other_step = 0;
  double top1_changed = 0;  // over all layers' tokens
  std::vector<double> top1_changed_per_layer;
  std::vector<std::vector<std::pair<std::string, double>>> delta;  // per layer: metric, other - this
};

// A dead expert re-initialized during training (moe.revival), from the checkpoint's history.
struct Revival {
  int64_t step = 0, layer = 0, expert = 0;
  int64_t source = -1;  // the busiest expert it was copied from; -1: drawn fresh
};

struct Result {
  std::string checkpoint, router, data_description;
  std::string routing;  // the router with its options other than the defaults (rc::describe_routing)
  int64_t step = 0, experts = 0, top_k = 0, tokens = 0;
  int batches = 0;
  collapse::Thresholds thresholds;
  std::vector<LayerResult> layers;
  collapse::Verdict overall = collapse::Verdict::healthy;
  std::vector<std::pair<std::string, collapse::Spread>> spread;  // each scalar metric across layers
  std::vector<int64_t> history_steps;
  std::vector<int64_t> history_counts;  // [logged step][layer][expert]
  std::vector<double> history_update_ratio;  // [logged step][layer][expert]; empty in older checkpoints
  std::vector<Revival> revivals;        // in training order
  std::optional<Comparison> compare;
  std::vector<DevicePrediction> devices;    // --ep first when given, then 2, 4, 8 where they divide E
  std::optional<MeasuredDevices> measured;  // a run whose experts were grouped into devices
  // Over training (tools/lib/diagnose/training_view.h).
  std::string upcycled_from;               // the dense checkpoint the run started from, or empty
  std::vector<double> similarity_history;  // [logged step][layer] mean expert similarity (NaN: not measured)
  std::vector<int64_t> churn_steps;        // the later step of each pair of consecutive routing traces
  std::vector<double> churn;               // [churn step][layer]: share of probe tokens whose top-1 changed
};

// Throws std::runtime_error (bad file, bad data, an --ep that does not divide E) with a message
// naming what is wrong.
Result run(const std::string& checkpoint, const Options& options);

int exit_status(const Result& r);  // 0 healthy, 3 otherwise
void print_table(const Result& r, std::ostream& out);
void write_json(const Result& r, std::ostream& out);

}  // namespace diagnose
