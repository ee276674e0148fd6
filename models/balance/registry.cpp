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

engine::Tensor cv_squared(const engine::Tensor& v) {
  using namespace engine;
  Tensor m = mean_all(v);
  Tensor centered = sub(v, m);
  return div(mean_all(mul(centered, centered)), add_scalar(mul(m, m), 1e-10));
}

}  // namespace moe
