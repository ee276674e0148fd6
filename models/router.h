// Routing: the first of the MoE layer's four stages (route -> dispatch -> experts -> combine).
//
// route() checks the router's rules (models/catalog.h), lets the configured router score every
// token against every expert and select experts (each router in models/routers/KEY.cpp; the
// loss-free bias b picks, never weighs), applies capacity, and returns a plan whose kept slots
// are grouped by expert (contiguous rows per expert, tokens in order inside), plus the
// differentiable tensors the balance losses read. Notation and conventions: models/README.md
// (z logits, s scores, p normalized scores, g gates, c_i counts before drops).
//
// The plan names tokens and experts by index only; dispatch and combine gather and scatter by
// those indices, so they make no assumption that all experts live in this process.
#pragma once
#include <string>
#include <vector>

#include "engine/dist/communicator.h"
#include "engine/engine.h"
#include "models/catalog.h"

namespace moe {

enum class DropPolicy { position, score };

struct RouterConfig {
  RouterKind kind = RouterKind::topk_softmax;
  int64_t num_experts = 8;
  int64_t top_k = 2;
  bool normalize_topk = false;   // always on for sigmoid_topk
  double capacity_factor = 0.0;  // <= 0: dropless (routers whose catalog entry requires a capacity refuse it)
  DropPolicy drop_policy = DropPolicy::position;
  RoutingOptions options;  // models/routers/options.def: jitter, softmax order, scaling, groups, ...
};

// Capacity per expert, C = ceil(capacity_factor * N * k / E); 0 means unlimited.
int64_t expert_capacity(const RouterConfig& config, int64_t num_tokens);

struct Routing {
  int64_t num_tokens = 0, num_experts = 0, top_k = 0;

  // The dispatch plan: kept slots grouped by expert.
  engine::Tensor slot_token;            // i32 [S]
  engine::Tensor slot_gate;             // [S], differentiable: g of each kept slot
  std::vector<int64_t> expert_offsets;  // [E + 1]: expert e owns slots [off[e], off[e+1])

  // Assignments before capacity drops: token-choice routers assign N*k slots (token-major),
  // expert_choice the slots its experts picked.
  std::vector<int32_t> assigned_expert;  // [M]
  std::vector<int32_t> assigned_token;   // [M]
  engine::Tensor assigned_gate;          // [M], differentiable
  std::vector<int64_t> counts;           // c_i over the assignments (sums to M)
  // What the count-based balance terms measure f_i on: these counts over balance_tokens tokens.
  // route() sets them to counts and num_tokens; a global-batch balance scope replaces them with
  // the counts of the whole step (every micro-batch of every rank).
  std::vector<int64_t> balance_counts;
  int64_t balance_tokens = 0;
  int64_t dropped = 0;  // slots dropped by capacity
  // The number of devices the experts are grouped into for device-level terms (device_aux):
  // device d holds experts [d E/D, (d+1) E/D). Set by the MoE layer; route() leaves it 1.
  int64_t devices = 1;

  // Differentiable tensors for the balance losses (undefined where a router has none).
  engine::Tensor logits;      // z [N, E]
  engine::Tensor probs;       // p [N, E], scores normalized over all experts
  engine::Tensor load_probs;  // noisy_topk in training: P(token keeps expert i under new noise) [N, E]
};

// Draws a reference file supplies instead of the router's own (moe-refcheck replays them); an
// undefined tensor means "draw from the noise generator".
struct RouterReplay {
  engine::Tensor noise;   // noisy_topk: eps [N, E]
  engine::Tensor jitter;  // input_jitter: u [N, d]
};

// The router's learned weights for one layer.
struct RouterWeights {
  engine::Tensor gate;   // W_r [E, d]
  engine::Tensor noise;  // W_noise [E, d], noisy_topk only
};

struct RouteInputs {
  engine::Tensor x;                                 // [N, d]
  const std::vector<int32_t>* token_ids = nullptr;  // hash router: the tokens' ids, [N]
  const std::vector<float>* bias = nullptr;         // loss-free bias b [E], or null
  bool training = true;
  engine::Generator* noise = nullptr;  // noisy_topk in training
  // noisy_topk in training: standard-normal draws eps [N, E] to use instead of drawing from
  // `noise` (a reference file's noise replayed by moe-refcheck).
  engine::Tensor replay_noise;
  // input_jitter in training: the multipliers u [N, d] to use instead of drawing from `noise`.
  engine::Tensor replay_jitter;
  // Expert parallelism: the ranks whose tokens share the experts. Capacity then counts the
  // whole group's tokens, and drops follow the order of the group's batch (rank-major), so a
  // group drops exactly the slots one process holding the group's tokens would. Null: this
  // process's tokens only.
  std::shared_ptr<engine::dist::Communicator> capacity_group;
};

// Throws std::invalid_argument when the config breaks a rule of its router (models/catalog.h).
Routing route(const RouterConfig& config, const RouterWeights& weights, const RouteInputs& in);

// Throws std::invalid_argument naming the rule a router config breaks; route() and the MoE layer
// call it, so the C++ API refuses what the config loader refuses.
void check_router_config(const RouterConfig& config);

}  // namespace moe
