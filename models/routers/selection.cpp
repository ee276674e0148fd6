#include "models/routers/selection.h"

#include <algorithm>
#include <limits>
#include <numeric>

namespace moe::routers {

using namespace engine;

namespace {

// 0 where token t may choose expert e, -inf outside its topk_groups best groups. A group's rank
// is the sum of its two largest (scores + b) (its one entry when groups hold one expert); equal
// ranks go to the lower group, as topk's ties do.
std::vector<double> group_mask(const std::vector<double>& biased, int64_t N, int64_t E, int64_t groups, int64_t keep) {
  const int64_t size = E / groups;
  std::vector<double> mask(N * E, -std::numeric_limits<double>::infinity());
  std::vector<double> rank(groups);
  std::vector<int64_t> order(groups);
  for (int64_t t = 0; t < N; ++t) {
    for (int64_t g = 0; g < groups; ++g) {
      const double* s = &biased[t * E + g * size];
      double first = -std::numeric_limits<double>::infinity(), second = first;
      for (int64_t i = 0; i < size; ++i) {
        if (s[i] > first) {
          second = first;
          first = s[i];
        } else if (s[i] > second) {
          second = s[i];
        }
      }
      rank[g] = size > 1 ? first + second : first;
    }
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return rank[a] > rank[b]; });
    for (int64_t j = 0; j < keep; ++j) std::fill_n(&mask[t * E + order[j] * size], size, 0.0);
  }
  return mask;
}

}  // namespace

Tensor constant_like(const std::vector<double>& values, const Shape& shape, const Tensor& like) {
  return Tensor::from_vector(values, shape).to(like.dtype()).to(like.device());
}

SelectRules select_rules(const RouterConfig& config, const RouteInputs& in) {
  SelectRules rules;
  rules.bias = in.bias;
  rules.expert_groups = config.options.expert_groups;
  rules.topk_groups = config.options.topk_groups;
  rules.force_balance = config.options.force_balance;
  return rules;
}

Tensor gather_scores(const Tensor& scores, const std::vector<int32_t>& experts, int64_t k) {
  const int64_t N = scores.size(0), E = scores.size(1);
  std::vector<int32_t> flat(experts.size());
  for (size_t m = 0; m < experts.size(); ++m) flat[m] = static_cast<int32_t>((m / k) * E + experts[m]);
  Tensor picked = gather_rows(reshape(scores, {N * E, 1}),
                              Tensor::from_vector(flat, {static_cast<int64_t>(flat.size())}, scores.device()));
  return reshape(picked, {N, k});
}

Selection select_topk(const Tensor& scores, int64_t k, const SelectRules& rules) {
  const int64_t n = scores.size(0), e = scores.size(1);
  if (rules.force_balance) {
    std::vector<int32_t> experts(n * k);
    for (int64_t m = 0; m < n * k; ++m) experts[m] = static_cast<int32_t>(m % e);  // m = t k + j
    return {gather_scores(scores, experts, k), experts};
  }
  std::vector<double> b(e, 0.0);
  if (rules.bias) b.assign(rules.bias->begin(), rules.bias->end());
  Tensor biased = rules.bias ? add(scores, constant_like(b, {e}, scores)) : scores;
  const int64_t groups = rules.expert_groups, keep = rules.topk_groups == 0 ? groups : rules.topk_groups;
  if (groups > 1 && keep < groups)  // experts outside the kept groups cannot be among the top k
    biased = add(biased, constant_like(group_mask(biased.to_vector(), n, e, groups, keep), {n, e}, scores));
  if (!rules.bias && !(groups > 1 && keep < groups)) {
    TopK top = topk(scores, k);
    return {top.values, top.indices.to_int_vector()};
  }
  TopK top = topk(biased, k);
  std::vector<int32_t> experts = top.indices.to_int_vector();
  // The gates are the scores themselves, gathered, so neither b nor the mask enters them.
  return {gather_scores(scores, experts, k), experts};
}

Tensor replayed(const Tensor& given, const Shape& shape, const char* what, const Tensor& like) {
  ENGINE_CHECK(given.shape() == shape, "route",
               std::string("replayed ") + what + " must be " + shape_str(shape) + ", got " + given.str());
  return given.to(like.dtype()).to(like.device());
}

Tensor normalize_rows(const Tensor& g) { return div(g, sum(g, -1, true)); }

void assign_token_choice(Routing& r, const Selection& sel, const Tensor& gates) {
  const int64_t k = r.top_k;
  r.assigned_expert = sel.experts;
  r.assigned_token.resize(sel.experts.size());
  for (size_t m = 0; m < sel.experts.size(); ++m) r.assigned_token[m] = static_cast<int32_t>(m / k);
  r.assigned_gate = reshape(gates, {r.num_tokens * k});
}

}  // namespace moe::routers
