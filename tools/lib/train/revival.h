// Dead-expert revival (moe.revival, configs/README.md): every check_every steps, each expert
// whose share of its layer's slots since the last check is below diagnostics.dead_fraction / E
// (the diagnostics' "dead", tools/lib/collapse/metrics.h) is re-initialized:
//   fresh         its weights and router row(s) drawn as at model init (N(0, init_std), the
//                 residual projection N(0, residual_init_std), biases 0);
//   copy_busiest  every weight and router row = the busiest expert's (most slots since the last
//                 check; the lowest index on a tie) + N(0, noise^2), so the two split its tokens.
// Either way its AdamW moments (the router rows' too) and its loss-free bias entry become 0.
//
// Contract: after_step is called once per optimizer step on every rank, after the update, with
// the step's counts summed over the ranks, so every rank sees the same dead experts and draws the
// same values (the generator is not sharded). Expert parallelism is refused by the config. The
// window counts and the generator are checkpointed (save/restore): a resumed run revives exactly
// as one that never stopped.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "models/transformer.h"
#include "tools/lib/checkpoint/checkpoint.h"
#include "tools/lib/config/run_config.h"
#include "tools/lib/train/metrics_log.h"

namespace train {

class Revival {
 public:
  Revival(const runconfig::RunConfig& config, const moe::TransformerLM& model);
  bool enabled() const { return config_.check_every > 0; }

  // counts: [MoE layer][expert], the step's slots over every rank. Returns the revivals made.
  std::vector<RevivalEvent> after_step(int64_t step, const std::vector<std::vector<int64_t>>& counts,
                                       moe::TransformerLM& model, engine::AdamW& optimizer);

  void save(ckpt::Checkpoint& c) const;                                // nothing when off
  void restore(const ckpt::Checkpoint& c, const std::string& source);  // throws CheckpointError

 private:
  void revive(moe::MoeLayer& layer, int64_t expert, int64_t source, engine::AdamW& optimizer,
              const moe::ModelConfig& model);

  runconfig::RevivalConfig config_;
  double dead_fraction_;
  int64_t experts_;
  engine::Generator gen_;
  std::vector<int64_t> window_;  // [MoE layer][expert]: slots since the last check
};

}  // namespace train
