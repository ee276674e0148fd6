// switch (Switch Transformer): topk_softmax with k = 1, gated by the chosen probability. Its
// catalog entry makes k = 1 a rule, which route() enforces for the C++ API as well.
#include "models/routers/registry.h"

namespace moe::routers {

void route_switch_k1(const RouterConfig& config, const RouterWeights& w, const RouteInputs& in, Routing& r) {
  route_topk_softmax(config, w, in, r);
}

}  // namespace moe::routers
