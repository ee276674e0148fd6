#include "models/balance/balance_loss.h"

namespace moe {

const std::vector<BalanceLoss>& balance_losses() {
  static const std::vector<BalanceLoss> all = {
#define MOE_BALANCE_LOSS(key, needs, summary) {#key, loss_##key},
#include "models/balance/losses.def"
#undef MOE_BALANCE_LOSS
  };
  return all;
}

std::vector<double> slot_fractions(const Routing& r) {
  const double total = static_cast<double>(r.balance_tokens * r.top_k);
  std::vector<double> f(r.balance_counts.begin(), r.balance_counts.end());
  for (double& v : f) v /= total;
  return f;
}

engine::Tensor weighted_mean_prob(const Routing& r, const std::vector<double>& weight) {
  using namespace engine;
  Tensor w = Tensor::from_vector(weight, {r.num_experts}).to(r.probs.dtype()).to(r.probs.device());
  return sum_all(mul(w, mean(r.probs, 0)));
}

engine::Tensor cv_squared(const engine::Tensor& v) {
  using namespace engine;
  Tensor m = mean_all(v);
  Tensor centered = sub(v, m);
  return div(mean_all(mul(centered, centered)), add_scalar(mul(m, m), 1e-10));
}

}  // namespace moe
