// sigmoid_topk (DeepSeek-V3): s = sigmoid(z); each token takes the k largest s_i + b_i, gates are
// the chosen s_i renormalized to sum 1. The balance losses read p = s / sum(s), scores
// normalized over all experts.
#include "models/routers/registry.h"
#include "models/routers/selection.h"

namespace moe::routers {

using namespace engine;

void route_sigmoid_topk(const RouterConfig& config, const RouterWeights& w, const RouteInputs& in, Routing& r) {
  r.logits = linear(in.x, w.gate);
  Tensor scores = sigmoid(r.logits);
  r.probs = normalize_rows(scores);
  Selection sel = select_topk(scores, r.top_k, select_rules(config, in));
  assign_token_choice(r, sel, normalize_rows(sel.gates));
}

}  // namespace moe::routers
