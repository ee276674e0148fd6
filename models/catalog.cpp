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
#define MOE_ROUTER(id, key, experts_per_token, capacity, weights, summary)                                          \
  {RouterKind::id, key, ExpertsPerToken::experts_per_token, CapacityRule::capacity, RouterWeightKind::weights, \
   summary},
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
