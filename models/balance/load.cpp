// Shazeer et al. 2017 load loss (noisy_topk only): Load_i = sum_t P(t, i), the expected number
// of tokens that keep expert i under fresh noise (route() computes P with the normal CDF);
// L = CV(Load)^2. Unlike the realized counts, this estimate is differentiable.
#include "models/balance/balance_loss.h"

namespace moe {

engine::Tensor loss_load(const Routing& r, const SequenceLayout&) {
  using namespace engine;
  if (!r.load_probs.defined()) return Tensor();
  return cv_squared(sum(r.load_probs, 0));
}

}  // namespace moe
