// hash (Roller et al. 2021, as a fixed baseline): expert = ((id * 2654435761) >> 7) mod E on the
// token id as an unsigned 64-bit product (Knuth's multiplicative constant), gate 1. Nothing is
// learned: no router weights, no logits (so no z-loss); the balance losses see one-hot scores.
// The loss-free bias is not used.
#include "models/routers/registry.h"
#include "models/routers/selection.h"

namespace moe::routers {

using namespace engine;

namespace {
int32_t hash_expert(int32_t token, int64_t num_experts) {
  return static_cast<int32_t>((static_cast<uint64_t>(static_cast<uint32_t>(token)) * 2654435761u >> 7) % num_experts);
}
}  // namespace

void route_hash(const RouterConfig&, const RouterWeights&, const RouteInputs& in, Routing& r) {
  const int64_t N = r.num_tokens, E = r.num_experts;
  ENGINE_CHECK(in.token_ids && static_cast<int64_t>(in.token_ids->size()) == N, "route",
               "the hash router needs the token id of every token");
  Selection sel;
  std::vector<double> one_hot(N * E, 0.0);
  for (int64_t t = 0; t < N; ++t) {
    const int32_t e = hash_expert((*in.token_ids)[t], E);
    sel.experts.push_back(e);
    one_hot[t * E + e] = 1.0;
  }
  r.probs = constant_like(one_hot, {N, E}, in.x);
  assign_token_choice(r, sel, Tensor::full({N, 1}, 1.0, in.x.dtype(), in.x.device()));
}

}  // namespace moe::routers
