// DeepSeek-V3 sequence-wise balance loss: the Switch loss computed within each sequence
// (f_i over the sequence's slots, f = c / (T k); P_i the mean over its tokens of the normalized
// scores p), then averaged over sequences. It balances each sequence, not just the batch.
#include "models/balance/balance_loss.h"

namespace moe {

engine::Tensor loss_sequence_aux(const Routing& r, const SequenceLayout& layout) {
  using namespace engine;
  if (!r.probs.defined() || r.assigned_expert.empty()) return Tensor();
  const int64_t B = layout.batch, T = layout.seq_len, E = r.num_experts;
  ENGINE_CHECK(B * T == r.num_tokens, "loss_sequence_aux",
               "layout " + std::to_string(B) + " x " + std::to_string(T) + " does not cover " +
                   std::to_string(r.num_tokens) + " tokens");
  std::vector<double> f(B * E, 0.0);
  const double per_sequence = static_cast<double>(T * r.top_k);
  for (size_t m = 0; m < r.assigned_expert.size(); ++m)
    f[(r.assigned_token[m] / T) * E + r.assigned_expert[m]] += 1.0 / per_sequence;
  Tensor fraction = Tensor::from_vector(f, {B, E}).to(r.probs.dtype()).to(r.probs.device());
  Tensor mean_prob = mean(reshape(r.probs, {B, T, E}), 1);  // [B, E]
  return scale(sum_all(mul(fraction, mean_prob)), static_cast<double>(E) / static_cast<double>(B));
}

}  // namespace moe
