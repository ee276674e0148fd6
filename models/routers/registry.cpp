#include "models/routers/registry.h"

#include <stdexcept>

namespace moe::routers {

RouteFn route_function(RouterKind kind) {
  switch (kind) {
#define MOE_ROUTER(id, key, experts_per_token, capacity, weights, options, summary) \
  case RouterKind::id:                                                     \
    return route_##id;
#include "models/routers/routers.def"
#undef MOE_ROUTER
  }
  throw std::logic_error("route_function: a RouterKind without a function");
}

}  // namespace moe::routers
