// expert_choice (Zhou et al. 2022): p = softmax(z); each expert takes the C = min(N, capacity)
// tokens with the largest p_ti, gated by p_ti. The selection is the capacity, so route() drops
// nothing after it; a token may get anywhere from 0 to E experts. The loss-free bias is not used.
#include <algorithm>

#include "models/routers/registry.h"

namespace moe::routers {

using namespace engine;

void route_expert_choice(const RouterConfig& config, const RouterWeights& w, const RouteInputs& in, Routing& r) {
  const int64_t N = r.num_tokens, E = r.num_experts;
  r.logits = linear(in.x, w.gate);
  r.probs = softmax(r.logits);
  const int64_t C = std::min<int64_t>(N, expert_capacity(config, N));
  TopK picks = topk(transpose(r.probs, 0, 1), C);  // each expert's C best tokens
  const std::vector<int32_t> tokens = picks.indices.to_int_vector();
  r.assigned_token = tokens;
  r.assigned_expert.resize(tokens.size());
  for (size_t m = 0; m < tokens.size(); ++m) r.assigned_expert[m] = static_cast<int32_t>(m / C);
  r.assigned_gate = reshape(picks.values, {E * C});
}

}  // namespace moe::routers
