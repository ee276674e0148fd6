// The routers' functions, one per entry of models/routers/routers.def. A router fills the
// Routing's scores (logits, probs, load_probs where it has them) and its assignments before
// capacity (assigned_expert, assigned_token, assigned_gate); route() checks its rules first and
// builds the dispatch plan after.
#pragma once
#include "models/router.h"

namespace moe::routers {

using RouteFn = void (*)(const RouterConfig& config, const RouterWeights& weights, const RouteInputs& in, Routing& r);

#define MOE_ROUTER(id, key, experts_per_token, capacity, weights, options, summary) \
  void route_##id(const RouterConfig& config, const RouterWeights& weights, const RouteInputs& in, Routing& r);
#include "models/routers/routers.def"
#undef MOE_ROUTER

RouteFn route_function(RouterKind kind);

}  // namespace moe::routers
