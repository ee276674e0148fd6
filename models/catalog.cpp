#include "models/catalog.h"

#include <sstream>
#include <stdexcept>

namespace moe {

bool RouterInfo::provides(LossInput input) const {
  switch (input) {
    case LossInput::scores: return true;
    case LossInput::logits: return weights != RouterWeightKind::none;
    case LossInput::noise: return weights == RouterWeightKind::gate_noise;
  }
  return false;
}

const std::vector<RouterInfo>& router_infos() {
  static const std::vector<RouterInfo> all = {
#define MOE_ROUTER(id, key, experts_per_token, capacity, weights, options, summary)                                 \
  {RouterKind::id, key, ExpertsPerToken::experts_per_token, CapacityRule::capacity, RouterWeightKind::weights, \
   options, summary},
#include "models/routers/routers.def"
#undef MOE_ROUTER
  };
  return all;
}

const RouterInfo& router_info(RouterKind kind) {
  for (const RouterInfo& r : router_infos())
    if (r.kind == kind) return r;
  throw std::logic_error("router_info: a RouterKind without a catalog entry");
}

const RouterInfo* find_router(const std::string& key) {
  for (const RouterInfo& r : router_infos())
    if (key == r.key) return &r;
  return nullptr;
}

std::string router_keys() {
  std::string out;
  for (const RouterInfo& r : router_infos()) out += (out.empty() ? "" : ", ") + std::string(r.key);
  return out;
}

bool RouterInfo::takes(const RoutingOptionInfo& option) const {
  if (option.scope == OptionScope::every) return true;
  std::istringstream names(options);
  for (std::string name; names >> name;)
    if (name == option.key) return true;
  return false;
}

const std::vector<RoutingOptionInfo>& routing_option_infos() {
  static const std::vector<RoutingOptionInfo> all = {
#define MOE_ROUTING_OPTION(key, type, default_value, scope, allowed, source, summary) \
  {#key, OptionScope::scope, allowed, source, summary},
#include "models/routers/options.def"
#undef MOE_ROUTING_OPTION
  };
  return all;
}

bool RoutingOptionInfo::is_set(const RoutingOptions& options) const {
  const RoutingOptions defaults;
#define MOE_ROUTING_OPTION(name, type, default_value, scope, allowed, source, summary) \
  if (std::string(key) == #name) return !(options.name == defaults.name);
#include "models/routers/options.def"
#undef MOE_ROUTING_OPTION
  throw std::logic_error(std::string("RoutingOptionInfo: no option ") + key);
}

const std::vector<LossInfo>& balance_loss_infos() {
  static const std::vector<LossInfo> all = {
#define MOE_BALANCE_LOSS(key, needs, summary) {#key, LossInput::needs, summary},
#include "models/balance/losses.def"
#undef MOE_BALANCE_LOSS
  };
  return all;
}

const LossInfo* find_balance_loss(const std::string& key) {
  for (const LossInfo& l : balance_loss_infos())
    if (key == l.key) return &l;
  return nullptr;
}

const char* loss_input_name(LossInput input) {
  switch (input) {
    case LossInput::scores: return "scores";
    case LossInput::logits: return "logits";
    case LossInput::noise: return "noise";
  }
  return "?";
}

namespace {

// The routers that provide an input, for messages: "noisy_topk" or "every router but hash".
std::string routers_providing(LossInput input) {
  std::string with, without;
  for (const RouterInfo& r : router_infos()) {
    std::string& list = r.provides(input) ? with : without;
    list += (list.empty() ? "" : ", ") + std::string(r.key);
  }
  if (without.empty()) return "every router";
  if (with.find(", ") == std::string::npos) return "router " + with;
  return "routers " + with;
}

std::string num(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

}  // namespace

std::string check_top_k(const RouterInfo& router, int64_t top_k) {
  if (router.experts_per_token == ExpertsPerToken::one && top_k != 1)
    return std::string("router ") + router.key + " routes each token to one expert, got top_k " + num(top_k);
  return "";
}

std::string check_capacity(const RouterInfo& router, double capacity_factor) {
  if (router.capacity == CapacityRule::required && !(capacity_factor > 0))
    return std::string("router ") + router.key + " needs a capacity, got capacity_factor " + num(capacity_factor);
  return "";
}

std::string check_loss(const RouterInfo& router, const LossInfo& loss, double coefficient) {
  if (coefficient == 0 || router.provides(loss.needs)) return "";
  return std::string("the ") + loss.key + " loss needs the router's " + loss_input_name(loss.needs) + " (" +
         routers_providing(loss.needs) + "), router is " + router.key;
}

namespace {

// The routers that take an option, for messages.
std::string routers_taking(const RoutingOptionInfo& option) {
  std::string list;
  for (const RouterInfo& r : router_infos())
    if (r.takes(option)) list += (list.empty() ? "" : ", ") + std::string(r.key);
  return list.empty() ? "none" : list;
}

const RoutingOptionInfo& option_info(const std::string& key) {
  for (const RoutingOptionInfo& o : routing_option_infos())
    if (key == o.key) return o;
  throw std::logic_error("option_info: no routing option " + key);
}

}  // namespace

OptionProblem check_routing_options(const RouterInfo& router, const RoutingOptions& o, int64_t num_experts,
                                    int64_t top_k) {
  for (const RoutingOptionInfo& option : routing_option_infos())
    if (option.is_set(o) && !router.takes(option))
      return {std::string("moe.") + option.key,
              std::string("router ") + router.key + " does not take " + option.key + " (routers that do: " +
                  routers_taking(option) + ")",
              "the default with router " + std::string(router.key)};
  auto problem = [](const char* key, const std::string& what) {
    return OptionProblem{std::string("moe.") + key, what, option_info(key).allowed};
  };
  if (!(o.input_jitter >= 0 && o.input_jitter < 1))
    return problem("input_jitter", "must be in [0, 1), got " + num(o.input_jitter));
  if (!(o.routed_scaling > 0)) return problem("routed_scaling", "must be > 0, got " + num(o.routed_scaling));
  const int64_t G = o.expert_groups;
  if (G < 1 || num_experts % G != 0)
    return problem("expert_groups", "must divide moe.num_experts (" + num(num_experts) + "), got " + num(G));
  if (o.topk_groups < 0 || o.topk_groups > G)
    return problem("topk_groups", "must be in [0, expert_groups = " + num(G) + "], got " + num(o.topk_groups));
  const int64_t reachable = (o.topk_groups == 0 ? G : o.topk_groups) * (num_experts / G);
  if (top_k > reachable)
    return problem("topk_groups", "leaves " + num(reachable) + " experts to choose from (" + num(o.topk_groups) +
                                      " groups of " + num(num_experts / G) + "), fewer than top_k " + num(top_k));
  if (o.sinkhorn_iterations < 1)
    return problem("sinkhorn_iterations", "must be >= 1, got " + num(o.sinkhorn_iterations));
  if (router.capacity == CapacityRule::required && o.eval_capacity_factor == 0)
    return problem("eval_capacity_factor", std::string("router ") + router.key +
                                               " needs a capacity in evaluation too, got 0 (dropless)");
  return {};
}

std::string catalog_markdown() {
  std::ostringstream md;
  md << kCatalogDocBegin << "\n\n";
  md << "| `moe.router` | top_k | capacity_factor | learns | what it does |\n|---|---|---|---|---|\n";
  for (const RouterInfo& r : router_infos()) {
    md << "| `" << r.key << "` | " << (r.experts_per_token == ExpertsPerToken::one ? "1" : "1 .. E") << " | "
       << (r.capacity == CapacityRule::required ? "> 0" : "any (<= 0: dropless)") << " | "
       << (r.weights == RouterWeightKind::gate         ? "W_r"
           : r.weights == RouterWeightKind::gate_noise ? "W_r, W_noise"
                                                       : "nothing")
       << " | " << r.summary << " |\n";
  }
  md << "\n| key | type | default | allowed | routers | from | what it does |\n|---|---|---|---|---|---|---|\n";
  const char* types[] = {
#define MOE_ROUTING_OPTION(key, type, default_value, scope, allowed, source, summary) #type,
#include "models/routers/options.def"
#undef MOE_ROUTING_OPTION
  };
  const char* defaults[] = {
#define MOE_ROUTING_OPTION(key, type, default_value, scope, allowed, source, summary) #default_value,
#include "models/routers/options.def"
#undef MOE_ROUTING_OPTION
  };
  for (size_t i = 0; i < routing_option_infos().size(); ++i) {
    const RoutingOptionInfo& o = routing_option_infos()[i];
    std::string type = types[i], value = defaults[i];
    if (type == "SoftmaxOrder") type = "enum";
    if (type == "double") type = "float";
    if (value.rfind("SoftmaxOrder::", 0) == 0) value = value.substr(14);
    md << "| `moe." << o.key << "` | " << type << " | " << value << " | " << o.allowed << " | "
       << (o.scope == OptionScope::every ? "every router" : routers_taking(o)) << " | " << o.source << " | "
       << o.summary << " |\n";
  }
  md << "\n| key | type | default | allowed | what it is |\n|---|---|---|---|---|\n";
  for (const LossInfo& l : balance_loss_infos()) {
    md << "| `moe.losses." << l.key << "` | schedule | 0.0 | >= 0";
    if (l.needs != LossInput::scores) md << "; > 0 at any step only with " << routers_providing(l.needs);
    md << " | coefficient of " << l.summary << " |\n";
  }
  md << "\n" << kCatalogDocEnd << "\n";
  return md.str();
}

std::string with_catalog_markdown(const std::string& document) {
  const size_t begin = document.find(kCatalogDocBegin);
  const size_t end_marker = begin == std::string::npos ? begin : document.find(kCatalogDocEnd, begin);
  if (end_marker == std::string::npos)
    throw std::runtime_error(std::string("no generated catalog section (a line '") + kCatalogDocBegin +
                             "' followed by '" + kCatalogDocEnd + "')");
  size_t end = end_marker + std::string(kCatalogDocEnd).size();
  if (end < document.size() && document[end] == '\n') ++end;
  return document.substr(0, begin) + catalog_markdown() + document.substr(end);
}

}  // namespace moe
