// topk_softmax (GShard, Mixtral): p = softmax(z), z = x W_r^T; each token takes the k experts
// with the largest p_i + b_i and is weighed by p_i (renormalized over the k when
// normalize_topk).
#include "models/routers/registry.h"
#include "models/routers/selection.h"

namespace moe::routers {

using namespace engine;

void route_topk_softmax(const RouterConfig& config, const RouterWeights& w, const RouteInputs& in, Routing& r) {
  r.logits = linear(in.x, w.gate);
  r.probs = softmax(r.logits);
  Selection sel = select_topk(r.probs, r.top_k, in.bias);
  assign_token_choice(r, sel, config.normalize_topk ? normalize_rows(sel.gates) : sel.gates);
}

}  // namespace moe::routers
