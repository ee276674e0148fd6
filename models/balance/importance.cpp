// Shazeer et al. 2017 importance loss: Imp_i = sum over tokens of the gate given to expert i
// (all assignments, before capacity drops); L = CV(Imp)^2.
#include "models/balance/balance_loss.h"

namespace moe {

engine::Tensor loss_importance(const Routing& r, const SequenceLayout&) {
  using namespace engine;
  const int64_t m = static_cast<int64_t>(r.assigned_expert.size());
  if (m == 0 || !r.assigned_gate.defined()) return Tensor();
  Tensor experts = Tensor::from_vector(r.assigned_expert, {m}, r.assigned_gate.device());
  Tensor importance = scatter_add_rows(reshape(r.assigned_gate, {m, 1}), experts, r.num_experts);
  return cv_squared(reshape(importance, {r.num_experts}));
}

}  // namespace moe
