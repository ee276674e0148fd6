// A Mixture-of-Experts feed-forward layer in four stages, kept as separate functions:
//   route    (models/router.h)  scores, top-k, gates, capacity -> a plan grouped by expert
//   dispatch                    gather the kept slots' token rows into contiguous expert blocks
//   experts                     one MLP per expert on its own block (a GEMM per weight, no per-token loop)
//   combine                     weighted scatter-add of the expert outputs back to the tokens
// Shared experts (DeepSeekMoE) see every token and are added to the result.
// Expert parallelism: with an expert group of P ranks, rank q holds experts [q E/P, (q+1) E/P)
// only. Each rank routes its own tokens; dispatch then sends every kept slot's row to the rank
// owning its expert (an all-to-all, differentiable: its backward is the reverse exchange), the
// owner runs its experts on the rows of the whole group, and a second all-to-all brings the
// outputs back for combine. Capacity counts the group's tokens (models/router.h).
#pragma once
#include <string>
#include <vector>

#include "engine/engine.h"
#include "models/params.h"
#include "models/router.h"

namespace moe {

enum class ExpertActivation { gelu, swiglu };

struct ExpertMlp {
  // gelu: fc2(gelu(fc1 x)) with biases; swiglu: down_proj(silu(gate_proj x) * up_proj x).
  ExpertActivation activation = ExpertActivation::gelu;
  engine::Tensor w1, b1, w2, b2, w_up;  // w_up only for swiglu (w1 = gate_proj, w2 = down_proj)

  static ExpertMlp create(ParamStore& params, const std::string& prefix, ExpertActivation activation, int64_t d_model,
                          int64_t d_hidden, double init_std, double residual_std, engine::Generator& gen,
                          engine::DType dtype = engine::DType::f32, engine::Device device = engine::Device::cpu());
  engine::Tensor forward(const engine::Tensor& x) const;  // [n, d] -> [n, d]
};

struct MoeLayerConfig {
  RouterConfig router;
  int64_t d_model = 128, d_expert = 256;
  int64_t num_shared_experts = 0, d_shared = 0;  // d_shared 0: d_expert
  ExpertActivation activation = ExpertActivation::gelu;
  double bias_update_rate = 0.0;             // loss-free balancing; 0 = off
  engine::DType dtype = engine::DType::f32;  // of the parameters (f64 for gradient checks)
  engine::Device device = engine::Device::cpu();
  // The ranks that share one copy of the experts (expert parallelism); null or one rank: all
  // experts live in this process. num_experts must be a multiple of the group's size.
  std::shared_ptr<engine::dist::Communicator> expert_group;
  // The number of devices device-level balance terms group the experts into (Routing::devices);
  // 0: the expert group's size, i.e. as expert parallelism places them. Any divisor of
  // num_experts, so one process can train with the grouping of a parallel run.
  int64_t device_groups = 0;
};

// What this rank's part of a layer cost since MoeLayer::reset_expert_load(): the slots its experts
// received (kept after capacity, from every rank of the expert group), the seconds they
// computed, forward and backward (the grouped expert MLPs only), and the seconds this rank waited
// in the layer's all-to-alls for the slowest rank of its group. The wait is measured by a barrier
// before each exchange, so only while the group's measure_wait is on; 0 in one process.
struct ExpertLoad {
  int64_t slots = 0;
  double compute_seconds = 0, wait_seconds = 0;
};

struct MoeForward {
  engine::Tensor output;  // same shape as the input
  Routing routing;        // for the balance losses and the diagnostics
};

class MoeLayer {
 public:
  MoeLayer(const MoeLayerConfig& config, ParamStore& params, const std::string& prefix, double init_std,
           double residual_std, engine::Generator& gen);

  // x [B, T, d]; token_ids [B*T] are read by the hash router only. replay's tensors, where
  // defined, replace the router's draws from `noise` (see RouteInputs).
  MoeForward forward(const engine::Tensor& x, const std::vector<int32_t>* token_ids, bool training,
                     engine::Generator* noise, const RouterReplay& replay = {});

  // Loss-free balancing (DeepSeek): after an optimizer step, b_i += u * sign(mean(c) - c_i),
  // with c the step's counts summed over its micro-batches. No gradient; checkpointed state.
  void update_bias(const std::vector<int64_t>& step_counts);
  const std::vector<float>& bias() const { return bias_; }
  void set_bias(const std::vector<float>& bias);
  // The rate may follow a schedule: the trainer sets the step's value before the step.
  void set_bias_update_rate(double rate) { config_.bias_update_rate = rate; }

  const MoeLayerConfig& config() const { return config_; }
  const RouterWeights& router_weights() const { return router_; }
  // The experts held here: global indices [first_local_expert(), + experts().size()).
  const std::vector<ExpertMlp>& experts() const { return experts_; }
  int64_t first_local_expert() const { return first_local_; }

  // The cost of the forwards (and their backwards) since the last reset, measured while metering
  // is on (the default). Off, the layer adds no brackets to the tape and reads no clock: on a
  // GPU each reading synchronizes the device, so a trainer meters its log steps only.
  ExpertLoad expert_load() const;
  void reset_expert_load();
  void set_metering(bool on) { metering_ = on; }

 private:
  MoeLayerConfig config_;
  RouterWeights router_;
  std::vector<ExpertMlp> experts_, shared_;
  std::vector<float> bias_;
  int64_t first_local_ = 0;
  // Bracket the expert MLPs (compute) and the expert-parallel exchanges (wait) on the tape, so
  // their backward is measured too (engine/ops/meter.h).
  std::shared_ptr<engine::Meter> compute_meter_, wait_meter_;
  int64_t slots_received_ = 0;
  bool metering_ = true;

  engine::Tensor run_on_owners(const engine::Tensor& rows, const Routing& routing);  // expert parallel
  template <class Experts>
  engine::Tensor metered(const std::shared_ptr<engine::Meter>& meter, const engine::Tensor& rows, Experts&& experts);
};

// The stages, usable on their own (tests, a distributed dispatch later).
engine::Tensor dispatch(const engine::Tensor& tokens, const Routing& routing);  // [N, d] -> [S, d]
// experts[e] runs on rows [offsets[e], offsets[e+1]).
engine::Tensor run_experts(const std::vector<ExpertMlp>& experts, const engine::Tensor& expert_rows,
                           const std::vector<int64_t>& offsets);                   // [S, d] -> [S, d]
engine::Tensor combine(const engine::Tensor& expert_out, const Routing& routing);  // [S, d] -> [N, d]

}  // namespace moe
