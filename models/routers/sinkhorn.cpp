// sinkhorn (BASE layers, Lewis et al. 2021, as Megatron-Core's sinkhorn router approximates it):
// z = x W_r^T, p = softmax(z). In training each token takes its top-k of a balanced assignment
// P = diag(r) K diag(c), K_ti = exp(z_ti - max_j z_tj), whose rows sum to 1 and columns to N/E
// after `sinkhorn_iterations` alternating row and column normalizations (columns last, so the
// expert totals are the balanced ones). P only selects; the gates are p_ti at the selected experts
// (renormalized over the k when normalize_topk), so the router learns through p as topk_softmax
// does. In evaluation: plain top-k of p. The loss-free bias is not used (the assignment balances).
// In expert parallelism each rank balances its own tokens.
#include <algorithm>
#include <cmath>
#include <limits>

#include "models/routers/registry.h"
#include "models/routers/selection.h"

namespace moe::routers {

using namespace engine;

namespace {

// P [N, E] from the logits, in double on the host (no gradient: it only selects).
std::vector<double> balanced_assignment(const std::vector<double>& z, int64_t N, int64_t E, int iterations) {
  std::vector<double> K(N * E), row(N, 1.0), col(E, 1.0);
  for (int64_t t = 0; t < N; ++t) {
    const double top = *std::max_element(&z[t * E], &z[t * E] + E);
    for (int64_t e = 0; e < E; ++e) K[t * E + e] = std::exp(z[t * E + e] - top);  // the row's best is 1
  }
  // A column can underflow to 0 everywhere (an expert far behind on every token); its sum is
  // floored so its scale stays finite and its entries stay 0 instead of 0 * inf = NaN.
  const double floor = std::numeric_limits<double>::min();
  std::vector<double> col_sum(E);
  for (int it = 0; it < iterations; ++it) {
    for (int64_t t = 0; t < N; ++t) {
      double s = 0;
      for (int64_t e = 0; e < E; ++e) s += K[t * E + e] * col[e];
      row[t] = 1.0 / std::max(s, floor);
    }
    std::fill(col_sum.begin(), col_sum.end(), 0.0);
    for (int64_t t = 0; t < N; ++t)
      for (int64_t e = 0; e < E; ++e) col_sum[e] += row[t] * K[t * E + e];
    for (int64_t e = 0; e < E; ++e) col[e] = (static_cast<double>(N) / E) / std::max(col_sum[e], floor);
  }
  for (int64_t t = 0; t < N; ++t)
    for (int64_t e = 0; e < E; ++e) K[t * E + e] *= row[t] * col[e];
  return K;
}

}  // namespace

void route_sinkhorn(const RouterConfig& config, const RouterWeights& w, const RouteInputs& in, Routing& r) {
  const int64_t N = r.num_tokens, E = r.num_experts;
  r.logits = linear(in.x, w.gate);
  r.probs = softmax(r.logits);
  SelectRules rules = select_rules(config, in);
  rules.bias = nullptr;
  Tensor chooser = r.probs;
  if (in.training)
    chooser = constant_like(balanced_assignment(r.logits.to_vector(), N, E, config.options.sinkhorn_iterations), {N, E},
                            r.probs);
  Selection sel = select_topk(chooser, r.top_k, rules);
  Tensor gates = gather_scores(r.probs, sel.experts, r.top_k);
  assign_token_choice(r, sel, config.normalize_topk ? normalize_rows(gates) : gates);
}

}  // namespace moe::routers
