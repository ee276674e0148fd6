// The symptoms of imbalance per routed expert, measured by the trainer: each expert's gradient
// norm and the size of its update relative to its weights (log steps only), and which experts
// received no gradient over the last diagnostics.idle_window steps.
//
// Contract:
// - An expert is `layers.<block>.moe.experts.<e>.*`: every tensor of that name prefix counts.
// - record_activity runs every step with the step's kept slots per expert (summed over
//   micro-batches and ranks, so identical on every rank); an expert whose slots were all dropped
//   or that got no token computed nothing, so the engine left its gradient undefined.
// - At a log step: measure_gradients after the gradients are final (averaged over ranks) and
//   before clipping, measure_update after the optimizer's step, then fill. Both measurements
//   sum over the expert group, so with expert parallelism every rank holds every expert's value;
//   they are collectives and every rank must call them.
// - last_active() is the state a resumed run needs (checkpoint /state/expert_last_active).
#pragma once
#include <cstdint>
#include <vector>

#include "engine/core/tensor.h"
#include "engine/dist/communicator.h"
#include "models/params.h"
#include "tools/lib/collapse/metrics.h"

namespace train {

class ExpertHealth {
 public:
  // moe_blocks: the block index of each MoE layer; window: diagnostics.idle_window (>= 1).
  ExpertHealth(const std::vector<moe::NamedParam>& params, const std::vector<int64_t>& moe_blocks, int64_t experts,
               int64_t window);

  void record_activity(int64_t step, const std::vector<std::vector<int64_t>>& kept);
  void measure_gradients(engine::dist::Communicator& expert_group);
  void measure_update(engine::dist::Communicator& expert_group);
  // Writes expert_grad_norm, expert_update_ratio and idle_share of each layer's stats.
  void fill(std::vector<collapse::LayerStats>& stats, int64_t step) const;

  // Per [layer][expert], row-major: the last step in which the expert computed a slot (0: none yet).
  const std::vector<int64_t>& last_active() const { return last_active_; }
  // A checkpoint from before this state was saved has none (empty): every expert then counts as
  // active at the checkpoint's step, so the idle share can read low for one window after resuming.
  void set_last_active(const std::vector<int64_t>& v, int64_t step);

 private:
  struct Part {
    size_t slot;  // layer * experts + expert
    engine::Tensor tensor;
  };
  std::vector<double> summed(std::vector<double> local, engine::dist::Communicator& group) const;

  int64_t layers_, experts_, window_;
  std::vector<Part> parts_;
  std::vector<engine::Tensor> before_;  // the expert weights at measure_gradients
  std::vector<double> grad_norm_, weight_sq_, update_ratio_;
  std::vector<int64_t> last_active_;
};

}  // namespace train
