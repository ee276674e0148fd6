// topk_softmax (GShard, Mixtral): z = x W_r^T, p = softmax(z). softmax_order before_topk (the
// default): each token takes the k experts with the largest p_i + b_i and is weighed by p_i
// (renormalized over the k when normalize_topk). after_topk (Mixtral, Megatron-Core's default):
// the k largest z_i + b_i, gates = softmax over those k logits (normalize_topk changes nothing,
// they already sum to 1). The balance losses read p over all E experts either way.
#include "models/routers/registry.h"
#include "models/routers/selection.h"

namespace moe::routers {

using namespace engine;

void route_topk_softmax(const RouterConfig& config, const RouterWeights& w, const RouteInputs& in, Routing& r) {
  r.logits = linear(in.x, w.gate);
  r.probs = softmax(r.logits);
  if (config.options.softmax_order == SoftmaxOrder::after_topk) {
    Selection sel = select_topk(r.logits, r.top_k, select_rules(config, in));
    assign_token_choice(r, sel, softmax(sel.gates));
    return;
  }
  Selection sel = select_topk(r.probs, r.top_k, select_rules(config, in));
  assign_token_choice(r, sel, config.normalize_topk ? normalize_rows(sel.gates) : sel.gates);
}

}  // namespace moe::routers
