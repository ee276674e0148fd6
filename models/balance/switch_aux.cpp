// Switch Transformer / GShard auxiliary loss: L = E * sum_i f_i * P_i, with f_i = c_i / (N k)
// the fraction of routed slots (before drops; no gradient) and P_i = mean_t p_ti (gradient).
// The denominator is N k for every router: expert_choice assigns E C slots, which equals N k
// only at capacity_factor 1, and dividing by E C would misstate the loss at any other capacity.
// 1 at perfect balance, about E/k at full collapse. Megatron-Core's aux_loss; HF Mixtral
// omits the 1/k in f_i, so its balanced value is k.
#include "models/balance/balance_loss.h"

namespace moe {

engine::Tensor loss_switch_aux(const Routing& r, const SequenceLayout&) {
  using namespace engine;
  // Measured whenever there are scores: under expert parallelism a rank may hold no assignment
  // of its own (expert_choice) while the step's counts f_i are not zero.
  if (!r.probs.defined() || r.balance_tokens == 0) return Tensor();
  // f_i from balance_counts: this micro-batch's counts, or the whole step's in the global-batch
  // balance scope (Qwen's global-batch balancing); P_i stays this micro-batch's.
  return scale(weighted_mean_prob(r, slot_fractions(r)), static_cast<double>(r.num_experts));
}

}  // namespace moe
