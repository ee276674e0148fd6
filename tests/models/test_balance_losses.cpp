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
  RouteInputs in{x, nullptr, nullptr, true, &noise, {}, {}};
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
  r.balance_counts = r.counts;
  r.balance_tokens = N;
  return r;
}
}  // namespace

TEST_CASE("balance losses at perfect balance and at full collapse", "[balance]") {
  Routing r = balanced(8, 4);
  const SequenceLayout layout{2, 4};
  CHECK(loss_switch_aux(r, layout).item() == Approx(1.0).epsilon(1e-12));
  CHECK(loss_sequence_aux(r, layout).item() == Approx(1.0).epsilon(1e-12));
  CHECK(loss_importance(r, layout).item() == Approx(0.0).margin(1e-12));
  CHECK(loss_z_loss(r, layout).item() == Approx(std::log(4.0) * std::log(4.0)).epsilon(1e-12));
  CHECK_FALSE(loss_load(r, layout).defined());  // only noisy_topk has load probabilities

  // Collapse: every token to expert 0 with all its probability.
  std::vector<double> one_hot(8 * 4, 0.0);
  for (int t = 0; t < 8; ++t) one_hot[t * 4] = 1.0;
  r.probs = Tensor::from_vector(one_hot, {8, 4});
  std::fill(r.assigned_expert.begin(), r.assigned_expert.end(), 0);
  r.counts = r.balance_counts = {8, 0, 0, 0};
  CHECK(loss_switch_aux(r, layout).item() == Approx(4.0).epsilon(1e-12));  // E / k
  // The global-batch scope: f_i from the step's counts (here: perfectly balanced over 4x the
  // tokens), P_i from this micro-batch, so the collapsed P meets a uniform f: E * 1 * 1/E = 1.
  Routing global = r;
  global.balance_counts = {8, 8, 8, 8};
  global.balance_tokens = 4 * r.num_tokens;
  CHECK(loss_switch_aux(global, layout).item() == Approx(1.0).epsilon(1e-12));
  CHECK(loss_sequence_aux(r, layout).item() == Approx(4.0).epsilon(1e-12));
  CHECK(loss_importance(r, layout).item() == Approx(3.0).epsilon(1e-9));  // CV^2 of (4, 0, 0, 0)
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
    INFO("router " << router_info(kind).key);
    REQUIRE_GRADCHECK(
        [&](const Ins& in) { return loss_switch_aux(route_random(kind, in[0], in[1], in[2], E, k), layout); },
        Ins({x, w, w_noise}));
    REQUIRE_GRADCHECK(
        [&](const Ins& in) { return loss_importance(route_random(kind, in[0], in[1], in[2], E, k), layout); },
        Ins({x, w, w_noise}));
  }
}

TEST_CASE("sequence_aux rejects a layout that does not cover the tokens", "[balance]") {
  Routing r = balanced(8, 4);
  CHECK_THROWS_WITH(loss_sequence_aux(r, SequenceLayout{3, 3}), Catch::Contains("does not cover 8 tokens"));
}

TEST_CASE("switch_aux divides counts by N k for every router: expert_choice at capacities other than 1",
          "[balance][switch_aux][expert_choice]") {
  // E = 4, k = 1, N = 8: expert_choice takes C = ceil(cf * N * k / E) tokens per expert, E C in all.
  const int64_t N = 8, E = 4;
  Tensor x = engine::testing::random_tensor({N, 3}, 5), w = engine::testing::random_tensor({E, 3}, 6);
  for (double capacity : {0.5, 1.0, 2.0}) {
    INFO("capacity_factor " << capacity);
    RouterConfig cfg;
    cfg.kind = RouterKind::expert_choice;
    cfg.num_experts = E;
    cfg.top_k = 1;
    cfg.capacity_factor = capacity;
    RouteInputs in{x, nullptr, nullptr, false, nullptr, {}, {}};
    Routing r = route(cfg, RouterWeights{w, Tensor()}, in);
    const int64_t C = static_cast<int64_t>(std::ceil(capacity * N / E));
    REQUIRE(static_cast<int64_t>(r.assigned_expert.size()) == E * C);
    // Every expert holds C slots, so f_i = C / (N k) and L = E * sum_i f_i P_i = E C / (N k), as sum_i P_i = 1.
    CHECK(loss_switch_aux(r, SequenceLayout{1, N}).item() == Approx(double(E * C) / N).epsilon(1e-12));
  }
}

TEST_CASE("every loss of the catalog has its function, in the catalog's order", "[balance][catalog]") {
  REQUIRE(balance_losses().size() == balance_loss_infos().size());
  for (size_t i = 0; i < balance_losses().size(); ++i) {
    CHECK(std::string(balance_losses()[i].name) == balance_loss_infos()[i].key);
    CHECK(balance_losses()[i].fn != nullptr);
  }
}
