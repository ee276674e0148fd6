#include "models/router.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "models/routers/registry.h"

namespace moe {

using namespace engine;

namespace {

// Fills the dispatch plan from the assignments: counts, capacity drops, expert-major order.
// A router whose catalog entry requires a capacity applies it in its own selection (expert
// choice), so nothing is dropped here.
void build_plan(const RouterConfig& config, Routing& r) {
  const int64_t E = r.num_experts, M = static_cast<int64_t>(r.assigned_expert.size());
  r.counts.assign(E, 0);
  for (int32_t e : r.assigned_expert) ++r.counts[e];
  const bool router_applies_capacity = router_info(config.kind).capacity == CapacityRule::required;
  const int64_t capacity = router_applies_capacity ? 0 : expert_capacity(config, r.num_tokens);

  std::vector<std::vector<int64_t>> per_expert(E);  // assignment indices, token order
  for (int64_t m = 0; m < M; ++m) per_expert[r.assigned_expert[m]].push_back(m);
  if (capacity > 0 && config.drop_policy == DropPolicy::score) {
    const std::vector<double> gate = r.assigned_gate.to_vector();
    for (auto& list : per_expert) {
      std::stable_sort(list.begin(), list.end(), [&](int64_t a, int64_t b) { return gate[a] > gate[b]; });
      if (static_cast<int64_t>(list.size()) > capacity) list.resize(capacity);
      std::sort(list.begin(), list.end());  // back to token order inside the expert
    }
  } else if (capacity > 0) {
    for (auto& list : per_expert)
      if (static_cast<int64_t>(list.size()) > capacity) list.resize(capacity);  // first come, first kept
  }

  std::vector<int32_t> slot_token, slot_assignment;
  r.expert_offsets.assign(E + 1, 0);
  for (int64_t e = 0; e < E; ++e) {
    for (int64_t m : per_expert[e]) {
      slot_token.push_back(r.assigned_token[m]);
      slot_assignment.push_back(static_cast<int32_t>(m));
    }
    r.expert_offsets[e + 1] = static_cast<int64_t>(slot_token.size());
  }
  const int64_t S = static_cast<int64_t>(slot_token.size());
  r.dropped = M - S;
  const Device device = r.assigned_gate.device();
  r.slot_token = Tensor::from_vector(slot_token, {S}, device);
  Tensor by_assignment = reshape(r.assigned_gate, {M, 1});
  r.slot_gate = reshape(gather_rows(by_assignment, Tensor::from_vector(slot_assignment, {S}, device)), {S});
}

}  // namespace

int64_t expert_capacity(const RouterConfig& config, int64_t num_tokens) {
  if (config.capacity_factor <= 0) return 0;
  return static_cast<int64_t>(
      std::ceil(config.capacity_factor * static_cast<double>(num_tokens * config.top_k) / config.num_experts));
}

void check_router_config(const RouterConfig& config) {
  const RouterInfo& info = router_info(config.kind);
  if (config.num_experts < 1) throw std::invalid_argument("route: num_experts must be >= 1");
  if (config.top_k < 1 || config.top_k > config.num_experts)
    throw std::invalid_argument("route: top_k must be in [1, " + std::to_string(config.num_experts) + "], got " +
                                std::to_string(config.top_k));
  for (const std::string& broken : {check_top_k(info, config.top_k), check_capacity(info, config.capacity_factor)})
    if (!broken.empty()) throw std::invalid_argument("route: " + broken);
}

Routing route(const RouterConfig& config, const RouterWeights& w, const RouteInputs& in) {
  check_router_config(config);
  ENGINE_CHECK(!in.bias || static_cast<int64_t>(in.bias->size()) == config.num_experts, "route",
               "bias must hold one value per expert");
  // Routing decisions are discrete: bf16's 8-bit mantissa would flip near-tied top-k choices
  // and perturb the balance losses' gradients, so the router computes in f32 whatever the
  // model's matmul precision (Switch Transformer's "selective precision").
  MatmulPrecisionScope router_precision(MatmulPrecision::f32);
  Routing r;
  r.num_tokens = in.x.size(0);
  r.num_experts = config.num_experts;
  r.top_k = config.top_k;
  routers::route_function(config.kind)(config, w, in, r);
  build_plan(config, r);
  return r;
}

}  // namespace moe
