// expert_choice (Zhou et al. 2022): p = softmax(z); each expert takes the C = min(N, capacity)
// tokens with the largest p_ti, gated by p_ti. The selection is the capacity, so route() drops
// nothing after it; a token may get anywhere from 0 to E experts. The loss-free bias is not used.
//
// In a capacity group (expert parallelism) each expert picks over the group's whole batch
// (N = every rank's tokens, rank-major, C from that N): every rank sees every rank's scores (a
// gather, no gradient), makes the same picks, and keeps those of its own tokens, gated by its
// own differentiable p_ti. Ties go to the earlier token of the group batch, as topk's do.
#include <algorithm>
#include <numeric>

#include "models/routers/registry.h"

namespace moe::routers {

using namespace engine;

namespace {

// The group's picks for this rank: expert-major, best first within an expert.
void pick_over_group(const RouterConfig& config, const RouteInputs& in, Routing& r) {
  engine::dist::Communicator& group = *in.capacity_group;
  const int64_t N = r.num_tokens, E = r.num_experts;
  const std::vector<double> all = group.all_gather(r.probs.to_vector());  // [ranks * N, E]
  const int64_t total = static_cast<int64_t>(all.size()) / E, first = group.rank() * N;
  const int64_t C = std::min<int64_t>(total, expert_capacity(config, total));
  std::vector<int32_t> order(static_cast<size_t>(total)), flat_index;
  for (int64_t e = 0; e < E; ++e) {
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + C, order.end(), [&](int32_t a, int32_t b) {
      const double pa = all[a * E + e], pb = all[b * E + e];
      return pa > pb || (pa == pb && a < b);
    });
    for (int64_t j = 0; j < C; ++j)
      if (order[j] >= first && order[j] < first + N) {
        const int32_t t = static_cast<int32_t>(order[j] - first);
        r.assigned_token.push_back(t);
        r.assigned_expert.push_back(static_cast<int32_t>(e));
        flat_index.push_back(static_cast<int32_t>(t * E + e));
      }
  }
  const int64_t M = static_cast<int64_t>(flat_index.size());
  Tensor flat = reshape(r.probs, {N * E, 1});
  r.assigned_gate =
      reshape(gather_rows(flat, Tensor::from_vector(flat_index, {M}, r.probs.device())), {M});
}

}  // namespace

void route_expert_choice(const RouterConfig& config, const RouterWeights& w, const RouteInputs& in, Routing& r) {
  const int64_t N = r.num_tokens, E = r.num_experts;
  r.logits = linear(in.x, w.gate);
  r.probs = softmax(r.logits);
  if (in.capacity_group && in.capacity_group->size() > 1) return pick_over_group(config, in, r);
  const int64_t C = std::min<int64_t>(N, expert_capacity(config, N));
  TopK picks = topk(transpose(r.probs, 0, 1), C);  // each expert's C best tokens
  const std::vector<int32_t> tokens = picks.indices.to_int_vector();
  r.assigned_token = tokens;
  r.assigned_expert.resize(tokens.size());
  for (size_t m = 0; m < tokens.size(); ++m) r.assigned_expert[m] = static_cast<int32_t>(m / C);
  r.assigned_gate = reshape(picks.values, {E * C});
}

}  // namespace moe::routers
