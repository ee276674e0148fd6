// DeepSeek-V2 device-level balance loss. The E experts are grouped into D devices as contiguous
// blocks of E/D (device d holds experts [d E/D, (d+1) E/D), as expert parallelism places them),
// and the Switch loss is taken over devices instead of experts:
//   F_d = sum_{i in d} f_i (device d's share of slots; no gradient), P'_d = sum_{i in d} P_i,
//   L = D * sum_d F_d * P'_d,
// with f_i = c_i / (N k) and P_i = mean_t p_ti exactly as switch_aux has them, so the
// global-batch balance scope (f_i from the step's counts) applies unchanged. DeepSeek-V2 writes
// it sum_d f'_d P'_d with their f_i = E c_i / (k N); their f'_d, the mean of those over the
// device's E/D experts, is D F_d, hence the same value. 1 at perfect balance, about D when every
// slot goes to one device; at D = E it is switch_aux, at D = 1 the constant sum_i f_i (1 for the
// token-choice routers) whose gradient is zero, since sum_i P_i = 1.
#include "models/balance/balance_loss.h"

namespace moe {

engine::Tensor loss_device_aux(const Routing& r, const SequenceLayout&) {
  using namespace engine;
  if (!r.probs.defined() || r.balance_tokens == 0) return Tensor();
  const int64_t E = r.num_experts, D = r.devices;
  ENGINE_CHECK(D >= 1 && E % D == 0, "loss_device_aux",
               "the experts cannot be grouped into " + std::to_string(D) + " devices: " + std::to_string(E) +
                   " experts are not a multiple of it (the device count must divide num_experts)");
  // sum_d F_d P'_d = sum_i F_{d(i)} P_i: each expert's P_i weighted by its device's share of the
  // slots, which keeps the differentiable part the same product switch_aux takes.
  const int64_t per_device = E / D;
  const std::vector<double> f = slot_fractions(r);
  std::vector<double> device_share(D, 0.0);
  for (int64_t i = 0; i < E; ++i) device_share[i / per_device] += f[i];
  std::vector<double> weight(E);
  for (int64_t i = 0; i < E; ++i) weight[i] = device_share[i / per_device];
  return scale(weighted_mean_prob(r, weight), static_cast<double>(D));
}

}  // namespace moe
