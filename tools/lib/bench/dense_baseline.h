// What being MoE costs: the engine's own dense step with the same active FLOPs, timed in
// alternation with the MoE step (moe-bench --dense-baseline).
//
// "Same active FLOPs" means: every token passes through the same matrix products as in the MoE
// model, apart from routing. A MoE layer runs each token through k routed experts of width
// d_expert plus every shared expert (width d_shared, or d_expert where that is 0), so its
// per-token FFN work equals one dense FFN of width
//     d_ff = k x d_expert + num_shared_experts x (d_shared or d_expert).
// Everything else (attention, embeddings, batch, optimizer, precision, device) stays as it is.
// What the dense model does not do is exactly the overhead being measured: the router's
// d x E product, top-k, the gather/scatter of tokens to experts, the balance losses and the
// expert-load bookkeeping. Capacity drops (moe.capacity_factor > 0) make the MoE step do a
// little less than k slots per token; the dense width ignores that, so such a ratio is a
// slight underestimate of the overhead.
#pragma once
#include <string>

#include "tools/lib/config/run_config.h"

namespace train {
class Trainer;
}

namespace bench {

// The FFN width that gives a dense layer the MoE layer's active FLOPs (the formula above).
int dense_equivalent_d_ff(const runconfig::MoeConfig& moe);

// The config with moe.enabled false and model.d_ff = dense_equivalent_d_ff, everything else
// the same, validated as any config. Throws runconfig::ConfigError when the config has no MoE
// layer, or keeps some layers dense with a d_ff other than the equivalent width (one d_ff
// serves every dense layer, so such a model has no dense twin with the same FLOPs).
runconfig::RunConfig dense_equivalent(const runconfig::RunConfig& config);

struct DenseBaseline {
  int d_ff = 0;             // the dense model's FFN width
  int steps = 0;            // timed steps of each, in alternation
  double moe_step_s = 0;    // median MoE step, timed in the alternation (no profiling)
  double dense_step_s = 0;  // median dense step
  double dense_flops_per_step = 0;
  double ratio = 0;  // moe_step_s / dense_step_s
};

// Builds the dense twin of `config` (dense_equivalent), warms it up for `warmup` steps, then
// times `steps` steps of each, one MoE step (on `moe_trainer`, already warm) then one dense
// step, so that a change in the machine's speed hits both alike. One process only.
DenseBaseline time_dense_baseline(train::Trainer& moe_trainer, const runconfig::RunConfig& config, int warmup,
                                  int steps);

}  // namespace bench
