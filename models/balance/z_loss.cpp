// ST-MoE router z-loss: L = mean_t (logsumexp_j z_tj)^2. Keeps router logits small, which keeps
// the softmax out of its saturated, collapse-prone regime.
#include "models/balance/balance_loss.h"

namespace moe {

engine::Tensor loss_z_loss(const Routing& r, const SequenceLayout&) {
  using namespace engine;
  if (!r.logits.defined()) return Tensor();
  return mean_all(square(logsumexp(r.logits)));
}

}  // namespace moe
