// Glue between the model's routing and the engine-free diagnostics: accumulates what one MoE
// layer's router did over batches (counts, drops, router scores, the domain x expert table,
// each token's top-1 expert) and turns it into collapse::LayerStats. Used live by the trainer at
// log steps and by moe-diagnose on evaluation batches.
#pragma once
#include <vector>

#include "models/moe_layer.h"
#include "tools/lib/collapse/metrics.h"
#include "tools/lib/config/run_config.h"

namespace train {

collapse::Thresholds thresholds_from(const runconfig::DiagnosticsConfig& config);

class RoutingObserver {
 public:
  // domains: how many domain labels the data has (0 when it has none).
  RoutingObserver(int64_t experts, int64_t top_k, int64_t domains, bool keep_top1 = false);

  // sequence_domains: one label per sequence of the batch (-1 unknown); seq_len: tokens per sequence.
  void add(const moe::Routing& r, const std::vector<int32_t>& sequence_domains, int64_t seq_len);

  // The load, router, domain and device metrics (similarity is added separately:
  // set_expert_similarity), with the experts on `devices` devices (must divide E).
  collapse::LayerStats stats(int64_t block, const collapse::Thresholds& t, int64_t devices = 1) const;
  const std::vector<int32_t>& top1() const { return top1_; }  // per token, in the order added
  // Several ranks: every rank's observations summed (a collective), so each holds the stats of
  // the whole batch. top1() stays this rank's.
  void sum_over(engine::dist::Communicator& ranks);

 private:
  int64_t experts_, top_k_, domains_;
  bool keep_top1_;
  std::vector<int64_t> counts_, kept_, domain_table_;
  int64_t dropped_ = 0;
  collapse::RouterAccumulator router_;
  std::vector<int32_t> top1_;
};

// Cosine similarity of the routed experts' weights (each expert's parameters concatenated),
// computed as one Gram matrix with the engine's matmul.
void set_expert_similarity(collapse::LayerStats& s, const moe::MoeLayer& layer);

}  // namespace train
