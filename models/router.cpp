#include "models/router.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "models/routers/registry.h"
#include "models/routers/selection.h"

namespace moe {

using namespace engine;

namespace {

// Which of an expert's assignments (indices into this process's assignment list, in token
// order) stay within capacity. Alone, the first `capacity` (position) or the `capacity` with the
// largest gates (score, ties to the earlier token). In a capacity group the rule is applied to
// the group's whole batch, rank-major: every rank sees every rank's counts (position) or gates
// (score) and keeps those of its own slots that the whole batch would keep.
struct CapacityView {
  int64_t capacity = 0;
  int rank = 0, ranks = 1;
  std::vector<int64_t> counts_before;  // [E]: slots of expert e on lower ranks (position)
  std::vector<double> all_gates;       // [ranks * M]: score policy in a group
  std::vector<int64_t> all_experts;    // [ranks * M]
};

CapacityView capacity_view(const RouterConfig& config, const Routing& r, const RouteInputs& in) {
  CapacityView v;
  const int64_t E = r.num_experts;
  const bool grouped = in.capacity_group && in.capacity_group->size() > 1;
  if (router_info(config.kind).capacity == CapacityRule::required || config.capacity_factor <= 0) return v;
  if (!grouped) {
    v.capacity = expert_capacity(config, r.num_tokens);
    return v;
  }
  engine::dist::Communicator& group = *in.capacity_group;
  v.rank = group.rank();
  v.ranks = group.size();
  std::vector<int64_t> mine = r.counts;
  mine.push_back(r.num_tokens);
  const std::vector<int64_t> all = group.all_gather(mine);
  int64_t group_tokens = 0;
  v.counts_before.assign(E, 0);
  for (int q = 0; q < v.ranks; ++q) {
    group_tokens += all[q * (E + 1) + E];
    if (all[q * (E + 1) + E] != r.num_tokens)
      throw std::invalid_argument("route: capacity group ranks hold different token counts (" +
                                  std::to_string(all[q * (E + 1) + E]) + " on rank " + std::to_string(q) + ", " +
                                  std::to_string(r.num_tokens) + " here)");
    if (q < v.rank)
      for (int64_t e = 0; e < E; ++e) v.counts_before[e] += all[q * (E + 1) + e];
  }
  v.capacity = expert_capacity(config, group_tokens);
  if (config.drop_policy == DropPolicy::score) {
    v.all_gates = group.all_gather(r.assigned_gate.to_vector());
    v.all_experts = group.all_gather(std::vector<int64_t>(r.assigned_expert.begin(), r.assigned_expert.end()));
  }
  return v;
}

void apply_capacity(const RouterConfig& config, const Routing& r, const CapacityView& v,
                    std::vector<std::vector<int64_t>>& per_expert) {
  if (v.capacity <= 0) return;
  const int64_t E = r.num_experts, M = static_cast<int64_t>(r.assigned_expert.size());
  if (config.drop_policy == DropPolicy::position) {
    for (int64_t e = 0; e < E; ++e) {
      const int64_t room = v.ranks > 1 ? std::max<int64_t>(0, v.capacity - v.counts_before[e]) : v.capacity;
      if (static_cast<int64_t>(per_expert[e].size()) > room) per_expert[e].resize(room);  // first come, first kept
    }
    return;
  }
  // score: the gates of the whole batch (this process's, or the group's rank-major).
  const std::vector<double> gates = v.ranks > 1 ? v.all_gates : r.assigned_gate.to_vector();
  const int64_t first = v.ranks > 1 ? v.rank * M : 0;  // this process's assignments in `gates`
  std::vector<std::vector<int64_t>> whole(E);          // global assignment indices per expert
  if (v.ranks > 1) {
    for (int64_t m = 0; m < static_cast<int64_t>(v.all_experts.size()); ++m) whole[v.all_experts[m]].push_back(m);
  } else {
    whole = per_expert;
  }
  for (int64_t e = 0; e < E; ++e) {
    std::vector<int64_t>& list = whole[e];
    std::stable_sort(list.begin(), list.end(), [&](int64_t a, int64_t b) { return gates[a] > gates[b]; });
    if (static_cast<int64_t>(list.size()) > v.capacity) list.resize(v.capacity);
    std::vector<int64_t> kept;
    for (int64_t m : list)
      if (m >= first && m < first + M) kept.push_back(m - first);
    std::sort(kept.begin(), kept.end());  // back to token order inside the expert
    per_expert[e] = kept;
  }
}

// Fills the dispatch plan from the assignments: counts, capacity drops, expert-major order.
// A router whose catalog entry requires a capacity applies it in its own selection (expert
// choice), so nothing is dropped here.
void build_plan(const RouterConfig& config, const RouteInputs& in, Routing& r) {
  const int64_t E = r.num_experts, M = static_cast<int64_t>(r.assigned_expert.size());
  r.counts.assign(E, 0);
  for (int32_t e : r.assigned_expert) ++r.counts[e];
  r.balance_counts = r.counts;
  r.balance_tokens = r.num_tokens;

  std::vector<std::vector<int64_t>> per_expert(E);  // assignment indices, token order
  for (int64_t m = 0; m < M; ++m) per_expert[r.assigned_expert[m]].push_back(m);
  apply_capacity(config, r, capacity_view(config, r, in), per_expert);

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

// The router's input under Switch Transformer's multiplicative jitter: x * u, u ~ U(1 - eps, 1 + eps)
// elementwise, in training only. u is drawn as 1 - eps + 2 eps Phi(n) with n ~ N(0, 1), which is
// uniform. It was written when a Generator's uniform and normal draws indexed its counter blocks
// differently (mixing them could reuse blocks); that is fixed, and the normal draw stays so a
// seed keeps giving the same jitter.
Tensor jittered_input(const RouterConfig& config, const RouteInputs& in) {
  const double eps = config.options.input_jitter;
  if (!in.training || eps <= 0) return in.x;
  const int64_t N = in.x.size(0), d = in.x.size(1);
  Tensor u;
  if (in.replay_jitter.defined()) {
    u = routers::replayed(in.replay_jitter, {N, d}, "jitter", in.x);
  } else {
    ENGINE_CHECK(in.noise != nullptr, "route", "input_jitter needs a noise generator in training");
    u = affine(normal_cdf(randn({N, d}, *in.noise, 0.0, 1.0, in.x.dtype(), in.x.device())), 2 * eps, 1 - eps);
  }
  return mul(in.x, u);
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
  const OptionProblem option =
      check_routing_options(info, config.options, config.num_experts, config.top_k);
  if (!option.key.empty()) throw std::invalid_argument("route: " + option.key + ": " + option.what);
}

Routing route(const RouterConfig& config, const RouterWeights& w, const RouteInputs& in) {
  check_router_config(config);
  ENGINE_CHECK(!in.bias || static_cast<int64_t>(in.bias->size()) == config.num_experts, "route",
               "bias must hold one value per expert");
  // Routing decisions are discrete: bf16's 8-bit mantissa would flip near-tied top-k choices
  // and perturb the balance losses' gradients, so the router computes in f32 whatever the
  // model's matmul precision (Switch Transformer's "selective precision").
  MatmulPrecisionScope router_precision(MatmulPrecision::f32);
  // Evaluation may use its own capacity (Switch Transformer evaluates with a larger one).
  RouterConfig active = config;
  if (!in.training && config.options.eval_capacity_factor >= 0)
    active.capacity_factor = config.options.eval_capacity_factor;
  // bf16 activations reach the router as f32 (the gradient flows back through the cast).
  RouteInputs router_in = in;
  router_in.x = cast(in.x, compute_dtype(in.x.dtype()));
  router_in.x = jittered_input(config, router_in);  // the router's view only: dispatch uses in.x
  Routing r;
  r.num_tokens = in.x.size(0);
  r.num_experts = config.num_experts;
  r.top_k = config.top_k;
  routers::route_function(config.kind)(active, w, router_in, r);
  // DeepSeek-V3's routed scaling: the routed experts' share of the output against the shared
  // experts' (and the residual's); selection and the losses' scores are unchanged.
  if (config.options.routed_scaling != 1.0) r.assigned_gate = affine(r.assigned_gate, config.options.routed_scaling, 0.0);
  build_plan(active, in, r);
  return r;
}

}  // namespace moe
