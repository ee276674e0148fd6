#include "models/balance/balance_loss.h"

namespace moe {

const std::vector<BalanceLoss>& balance_losses() {
  static const std::vector<BalanceLoss> all = {
      {"switch_aux", switch_aux_loss},     {"importance", importance_loss}, {"load", load_loss}, {"z_loss", z_loss},
      {"sequence_aux", sequence_aux_loss},
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
