// Expert-collapse diagnostics: per-layer balance metrics, their spread across layers, and the
// verdict rules. Pure functions of counts, router scores and weights, so training (live, at log
// steps), moe-diagnose (on evaluation batches) and the tests compute the same numbers.
// Definitions: README.md, "Expert-collapse diagnostics".
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace collapse {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct Thresholds {
  double dead_fraction = 0.1;         // dead: load share < dead_fraction / E
  double starved_fraction = 0.5;      // starved: load share < starved_fraction / E
  double max_vio = 1.0;               // imbalanced above this MaxVio
  int max_dead = 0;                   // imbalanced with more dead experts than this
  double topk_share = 0.9;            // collapsed when the k busiest experts take more than this share
  double collapsing_growth = 1.5;     // collapsing: late CV > growth x early CV ...
  double collapsing_min_cv = 0.5;     // ... and late CV above this
  double device_imbalance = 1.5;      // warn when the busiest device has more than this x the mean slots
  double vanishing_grad_norm = 1e-3;  // a starved expert with a gradient norm below this has a vanishing gradient
};

// Router statistics accumulated over tokens (from the normalized scores p and the logits z).
struct RouterAccumulator {
  double tokens = 0, max_prob = 0, entropy = 0, logsumexp = 0;
  bool has_logits = false;
  // probs, logits: [n, E] row-major; logits may be empty (the hash router has none).
  void add(const std::vector<float>& probs, const std::vector<float>& logits, int64_t experts);
};

struct LayerStats {
  int64_t block = -1;  // the transformer block this MoE layer sits in
  int64_t experts = 0, top_k = 0;
  std::vector<int64_t> counts;  // c_i: slots assigned before capacity drops
  std::vector<double> share;    // c_i / sum c
  double cv = 0, max_vio = 0, entropy = 0, gini = 0, topk_share = 0, dropped_fraction = 0;
  double effective_experts = 0;    // exp(H(share)): E at balance, k when k experts share the load evenly
  std::vector<int> dead, starved;  // expert indices
  std::vector<int> busiest;        // the k most loaded experts, busiest first
  double confidence = kNaN, router_entropy = kNaN, logit_scale = kNaN;
  std::vector<double> similarity;  // [E, E] cosine similarity of the experts' weights (may be empty)
  double mean_similarity = kNaN;   // mean over pairs i < j
  int64_t domains = 0;
  std::vector<int64_t> domain_counts;  // [domains, E] slots per (domain, expert); empty without labels
  double domain_mi = kNaN;             // I(domain; expert) / H(domain)

  // Devices (tools/lib/collapse/devices.h): the experts in `devices` contiguous blocks.
  std::vector<int64_t> kept;  // slots each expert computed (after capacity drops)
  int64_t devices = 1;
  std::vector<int64_t> device_slots;  // kept slots of each device's experts
  double device_imbalance = kNaN;     // max / mean of device_slots
  // Measured on each rank of a training run (empty elsewhere): the slots its experts received,
  // their compute seconds (forward + backward), the seconds it waited in the layer's all-to-alls
  // for the slowest rank, and the means over ranks of wait (and compute) / step time.
  std::vector<double> rank_slots, rank_compute_seconds, rank_wait_seconds;
  double wait_share = kNaN;
  double compute_share = kNaN;  // mean over ranks of the expert compute seconds / the step's
  // Measured by training at log steps (empty or NaN elsewhere; tools/lib/train/expert_health.h):
  // per expert, the L2 norm of its gradient (averaged over ranks, before clipping) and
  // ||p_after - p_before|| / ||p_before|| of the step's update; the share of the layer's expert
  // parameters that received no gradient in any step of the idle window.
  std::vector<double> expert_grad_norm, expert_update_ratio;
  double idle_share = kNaN;
};

// Fills the load metrics of `s` from counts (and dropped slots of `assigned` in all).
void compute_load(LayerStats& s, const std::vector<int64_t>& counts, int64_t top_k, int64_t dropped,
                  const Thresholds& t);
void set_router(LayerStats& s, const RouterAccumulator& r);
// gram: [E, E] dot products of the experts' flattened weights; similarity is their cosine.
void set_similarity(LayerStats& s, const std::vector<double>& gram, size_t experts);
// kept: slots per expert after drops; devices must divide E (std::invalid_argument otherwise).
void set_devices(LayerStats& s, const std::vector<int64_t>& kept, int64_t devices);
// table: [domains, E] slot counts.
void set_domains(LayerStats& s, const std::vector<int64_t>& table, int64_t domains);

// The named scalar metrics of a layer, in report order (name, value); NaN when not available.
std::vector<std::pair<std::string, double>> scalar_metrics(const LayerStats& s);

struct Spread {
  double min = kNaN, median = kNaN, p90 = kNaN, max = kNaN;
};
Spread spread(std::vector<double> values);  // NaNs are ignored

enum class Verdict { healthy, imbalanced, collapsing, collapsed };
const char* verdict_name(Verdict v);

struct LayerVerdict {
  Verdict verdict = Verdict::healthy;
  std::string reason;
};

// cv_history: the layer's load CV at each logged training step (oldest first), may be empty.
LayerVerdict judge(const LayerStats& s, const std::vector<double>& cv_history, const Thresholds& t);
Verdict worst(const std::vector<LayerVerdict>& verdicts);

// A metric for tables and reports: printf-formatted, `if_nan` where there is no value.
std::string format_number(double v, const char* format = "%.3f", const char* if_nan = "-");

// What a layer crosses of the live thresholds: a bit per threshold (0 when none is crossed),
// and the same as one line (empty when none is crossed).
int crossed_thresholds(const LayerStats& s, const Thresholds& t);
std::string live_warning(const LayerStats& s, const Thresholds& t);

}  // namespace collapse
