// Balance losses: values at known balance points, gradient checks through the router.
#include <catch2/catch.hpp>
#include <cmath>

#include "models/balance/balance_loss.h"
#include "tests/support/gradcheck.h"

using namespace engine;
using namespace moe;

namespace {
using Ins = std::vector<Tensor>;

Routing route_random(RouterKind kind, const Tensor& x, const Tensor& w, const Tensor& w_noise, int64_t E, int64_t k) {
  RouterConfig cfg;
  cfg.kind = kind;
  cfg.num_experts = E;
  cfg.top_k = k;
  cfg.capacity_factor = kind == RouterKind::expert_choice ? 1.0 : 0.0;
  Generator noise(4);
  RouteInputs in{x, nullptr, nullptr, true, &noise, {}};
  return route(cfg, RouterWeights{w, w_noise}, in);
}

// A routing with uniform scores and perfectly balanced assignments: N tokens, E experts, k = 1.
Routing balanced(int64_t N, int64_t E) {
  Routing r;
  r.num_tokens = N;
  r.num_experts = E;
  r.top_k = 1;
  r.probs = Tensor::full({N, E}, 1.0 / E, DType::f64);
  r.logits = Tensor::zeros({N, E}, DType::f64);
  for (int64_t t = 0; t < N; ++t) {
    r.assigned_expert.push_back(static_cast<int32_t>(t % E));
    r.assigned_token.push_back(static_cast<int32_t>(t));
  }
  r.assigned_gate = Tensor::full({N}, 0.5, DType::f64);
  r.counts.assign(E, N / E);
  return r;
}
}  // namespace

TEST_CASE("balance losses at perfect balance and at full collapse", "[balance]") {
  Routing r = balanced(8, 4);
  const SequenceLayout layout{2, 4};
  CHECK(switch_aux_loss(r, layout).item() == Approx(1.0).epsilon(1e-12));
  CHECK(sequence_aux_loss(r, layout).item() == Approx(1.0).epsilon(1e-12));
  CHECK(importance_loss(r, layout).item() == Approx(0.0).margin(1e-12));
  CHECK(z_loss(r, layout).item() == Approx(std::log(4.0) * std::log(4.0)).epsilon(1e-12));
  CHECK_FALSE(load_loss(r, layout).defined());  // only noisy_topk has load probabilities

  // Collapse: every token to expert 0 with all its probability.
  std::vector<double> one_hot(8 * 4, 0.0);
  for (int t = 0; t < 8; ++t) one_hot[t * 4] = 1.0;
  r.probs = Tensor::from_vector(one_hot, {8, 4});
  std::fill(r.assigned_expert.begin(), r.assigned_expert.end(), 0);
  r.counts = {8, 0, 0, 0};
  CHECK(switch_aux_loss(r, layout).item() == Approx(4.0).epsilon(1e-12));  // E / k
  CHECK(sequence_aux_loss(r, layout).item() == Approx(4.0).epsilon(1e-12));
  CHECK(importance_loss(r, layout).item() == Approx(3.0).epsilon(1e-9));  // CV^2 of (4, 0, 0, 0)
}

TEST_CASE("every balance loss has a gradient check through its router", "[balance][gradcheck]") {
  const int64_t E = 4, k = 2;
  Tensor x = engine::testing::random_tensor({6, 3}, 1);
  Tensor w = engine::testing::random_tensor({E, 3}, 2), w_noise = engine::testing::random_tensor({E, 3}, 3, 0.5);
  const SequenceLayout layout{2, 3};
  for (const BalanceLoss& loss : balance_losses()) {
    const RouterKind kind = std::string(loss.name) == "load" ? RouterKind::noisy_topk : RouterKind::topk_softmax;
    INFO("loss " << loss.name);
    auto f = [&](const Ins& in) { return loss.fn(route_random(kind, in[0], in[1], in[2], E, k), layout); };
    REQUIRE(f({x, w, w_noise}).defined());
    REQUIRE_GRADCHECK(f, Ins({x, w, w_noise}));
  }
  // The sigmoid router's normalized scores and the expert-choice plan feed the same losses.
  for (RouterKind kind : {RouterKind::sigmoid_topk, RouterKind::expert_choice}) {
    INFO("router " << router_kind_name(kind));
    REQUIRE_GRADCHECK(
        [&](const Ins& in) { return switch_aux_loss(route_random(kind, in[0], in[1], in[2], E, k), layout); },
        Ins({x, w, w_noise}));
    REQUIRE_GRADCHECK(
        [&](const Ins& in) { return importance_loss(route_random(kind, in[0], in[1], in[2], E, k), layout); },
        Ins({x, w, w_noise}));
  }
}

TEST_CASE("sequence_aux rejects a layout that does not cover the tokens", "[balance]") {
  Routing r = balanced(8, 4);
  CHECK_THROWS_WITH(sequence_aux_loss(r, SequenceLayout{3, 3}), Catch::Contains("does not cover 8 tokens"));
}
