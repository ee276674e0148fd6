// noisy_topk (Shazeer et al. 2017): H = z + eps * softplus(x W_noise^T) in training (H = z in
// evaluation); each token takes the k largest H_i + b_i, gates = softmax over the k chosen H
// (without b). The load loss reads P(x, i) = Phi((z_i - threshold_i) / noise_std_i), the chance
// that expert i stays selected under fresh noise, where threshold_i is the k-th largest H
// excluding i. The threshold is computed from H without the loss-free bias b, and ignores
// expert groups and forced balance (which select through select_topk like the other
// token-choice routers).
#include "models/routers/registry.h"
#include "models/routers/selection.h"

namespace moe::routers {

using namespace engine;

void route_noisy_topk(const RouterConfig& config, const RouterWeights& w, const RouteInputs& in, Routing& r) {
  const int64_t N = r.num_tokens, E = r.num_experts, k = r.top_k;
  r.logits = linear(in.x, w.gate);
  r.probs = softmax(r.logits);
  Tensor noisy = r.logits, noise_std;
  if (in.training) {
    ENGINE_CHECK((in.noise != nullptr || in.replay_noise.defined()) && w.noise.defined(), "route",
                 "noisy_topk needs a noise generator (or replayed noise) and W_noise");
    Tensor eps;
    if (in.replay_noise.defined()) {
      eps = replayed(in.replay_noise, {N, E}, "noise", r.logits);
    } else {
      eps = randn({N, E}, *in.noise, 0.0, 1.0, r.logits.dtype(), r.logits.device());
    }
    noise_std = softplus(linear(in.x, w.noise));
    noisy = add(r.logits, mul(eps, noise_std));
  }
  Selection sel = select_topk(noisy, k, select_rules(config, in));
  assign_token_choice(r, sel, softmax(sel.gates));  // softmax over the top-k of H
  if (in.training && k < E) {
    Tensor top = topk(noisy, k + 1).values;
    Tensor kth = slice(top, 1, k - 1, k), next = slice(top, 1, k, k + 1);  // [N, 1] each
    std::vector<double> in_topk(N * E, 0.0);
    for (int64_t m = 0; m < N * k; ++m) in_topk[(m / k) * E + sel.experts[m]] = 1.0;
    Tensor mask = constant_like(in_topk, {N, E}, noisy);
    Tensor threshold = add(mul(mask, next), mul(affine(mask, -1.0, 1.0), kth));
    r.load_probs = normal_cdf(div(sub(r.logits, threshold), noise_std));
  }
}

}  // namespace moe::routers
