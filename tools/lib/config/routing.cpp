// Run configuration: the routing options of models/routers/options.def as the model takes them,
// and as one line for people. Contract in run_config.h.
#include "tools/lib/config/run_config.h"
#include "tools/lib/config/text.h"

namespace runconfig {

namespace {
std::string option_text(double v) { return text::format_double(v); }
std::string option_text(int v) { return std::to_string(v); }
std::string option_text(bool v) { return v ? "true" : "false"; }
std::string option_text(SoftmaxOrder v) { return to_string(v); }
}  // namespace

moe::RoutingOptions routing_options(const MoeConfig& moe) {
  moe::RoutingOptions o;
#define MOE_ROUTING_OPTION(key, type, default_value, scope, allowed, source, summary) o.key = moe.key;
#include "models/routers/options.def"
#undef MOE_ROUTING_OPTION
  return o;
}

std::string describe_routing(const MoeConfig& moe) {
  const MoeConfig defaults;
  std::string out = to_string(moe.router);
  std::string options;
#define MOE_ROUTING_OPTION(key, type, default_value, scope, allowed, source, summary) \
  if (!(moe.key == defaults.key)) options += (options.empty() ? "" : ", ") + std::string(#key " ") + option_text(moe.key);
#include "models/routers/options.def"
#undef MOE_ROUTING_OPTION
  return options.empty() ? out : out + " (" + options + ")";
}

}  // namespace runconfig
