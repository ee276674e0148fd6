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
  RouteInputs in{x, nullptr, nullptr, true, &noise, {}, {}, {}};
  return route(cfg, RouterWeights{w, w_noise}, in);
}

// device_aux reads the device count the MoE layer sets; route() alone leaves one device.
Routing with_devices(Routing r, int64_t devices) {
  r.devices = devices;
  return r;
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
    auto f = [&](const Ins& in) {
      return loss.fn(with_devices(route_random(kind, in[0], in[1], in[2], E, k), 2), layout);
    };
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
    RouteInputs in{x, nullptr, nullptr, false, nullptr, {}, {}, {}};
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

namespace {
// A routing of N = expert_of_token.size() tokens with the given normalized scores [N, E], each
// token assigned to one expert (k = 1), no drops.
Routing one_per_token(const std::vector<double>& probs, int64_t E, const std::vector<int32_t>& expert_of_token) {
  const int64_t N = static_cast<int64_t>(expert_of_token.size());
  Routing r;
  r.num_tokens = N;
  r.num_experts = E;
  r.top_k = 1;
  r.probs = Tensor::from_vector(probs, {N, E});
  r.counts.assign(E, 0);
  for (int64_t t = 0; t < N; ++t) {
    r.assigned_expert.push_back(expert_of_token[t]);
    r.assigned_token.push_back(static_cast<int32_t>(t));
    ++r.counts[expert_of_token[t]];
  }
  r.assigned_gate = Tensor::full({N}, 1.0, DType::f64);
  r.balance_counts = r.counts;
  r.balance_tokens = N;
  return r;
}

std::vector<double> one_hot_rows(int64_t N, int64_t E, const std::vector<int32_t>& expert_of_token) {
  std::vector<double> p(N * E, 0.0);
  for (int64_t t = 0; t < N; ++t) p[t * E + expert_of_token[t]] = 1.0;
  return p;
}
}  // namespace

TEST_CASE("device_aux: 1 at balance, D when one device takes everything, whichever experts inside it",
          "[balance][device_aux]") {
  const SequenceLayout layout{2, 4};
  Routing r = balanced(8, 4);
  for (int64_t D : {1, 2, 4}) CHECK(loss_device_aux(with_devices(r, D), layout).item() == Approx(1.0).epsilon(1e-12));

  // Every token to expert 0 with all its probability: device 0 (experts 0, 1 at D = 2) takes it all.
  const std::vector<int32_t> all_zero(8, 0);
  Routing collapsed = one_per_token(one_hot_rows(8, 4, all_zero), 4, all_zero);
  CHECK(loss_device_aux(with_devices(collapsed, 2), layout).item() == Approx(2.0).epsilon(1e-12));
  CHECK(loss_device_aux(with_devices(collapsed, 4), layout).item() == Approx(4.0).epsilon(1e-12));

  // Half the tokens to expert 0, half to expert 1: one device at D = 2, so still D, while the
  // expert-level switch_aux sees two experts of four: 4 (1/2 1/2 + 1/2 1/2) = 2.
  const std::vector<int32_t> first_device = {0, 1, 0, 1, 0, 1, 0, 1};
  Routing one_device = one_per_token(one_hot_rows(8, 4, first_device), 4, first_device);
  CHECK(loss_device_aux(with_devices(one_device, 2), layout).item() == Approx(2.0).epsilon(1e-12));
  CHECK(loss_switch_aux(one_device, layout).item() == Approx(2.0).epsilon(1e-12));
  // Experts 0 and 2 instead: one on each device, so the devices are balanced (1) though the
  // experts are not (switch_aux 2 again).
  const std::vector<int32_t> both_devices = {0, 2, 0, 2, 0, 2, 0, 2};
  Routing spread = one_per_token(one_hot_rows(8, 4, both_devices), 4, both_devices);
  CHECK(loss_device_aux(with_devices(spread, 2), layout).item() == Approx(1.0).epsilon(1e-12));
  CHECK(loss_switch_aux(spread, layout).item() == Approx(2.0).epsilon(1e-12));
}

TEST_CASE("device_aux: hand-computed value on an uneven routing", "[balance][device_aux]") {
  // E = 4, D = 2 (device 0: experts 0, 1; device 1: experts 2, 3), k = 1, N = 4.
  // counts (2, 1, 1, 0): f = (1/2, 1/4, 1/4, 0), F = (3/4, 1/4).
  // column sums of p: (1.45, 0.85, 0.85, 0.85), P = (0.3625, 0.2125, 0.2125, 0.2125), P' = (0.575, 0.425).
  // L = 2 (3/4 0.575 + 1/4 0.425) = 2 * 0.5375 = 1.075.
  const std::vector<double> p = {0.4, 0.3, 0.2, 0.1, 0.1, 0.2, 0.3, 0.4, 0.25, 0.25, 0.25, 0.25, 0.7, 0.1, 0.1, 0.1};
  Routing r = one_per_token(p, 4, {0, 0, 1, 2});
  CHECK(loss_device_aux(with_devices(r, 2), SequenceLayout{1, 4}).item() == Approx(1.075).epsilon(1e-12));
  // D = E: 4 (1/2 0.3625 + 1/4 0.2125 + 1/4 0.2125) = 1.15, switch_aux's value.
  CHECK(loss_device_aux(with_devices(r, 4), SequenceLayout{1, 4}).item() == Approx(1.15).epsilon(1e-12));
  CHECK(loss_switch_aux(r, SequenceLayout{1, 4}).item() == Approx(1.15).epsilon(1e-12));
}

TEST_CASE("device_aux: switch_aux at D = E, the constant 1 without gradient at D = 1", "[balance][device_aux]") {
  const int64_t E = 4, k = 2;
  const SequenceLayout layout{2, 3};
  Tensor x = engine::testing::random_tensor({6, 3}, 11), w_noise = engine::testing::random_tensor({E, 3}, 13, 0.5);
  for (RouterKind kind : {RouterKind::topk_softmax, RouterKind::noisy_topk, RouterKind::sigmoid_topk}) {
    INFO("router " << router_info(kind).key);
    Tensor w = engine::testing::random_tensor({E, 3}, 12).set_requires_grad(true);
    const Routing r = route_random(kind, x, w, w_noise, E, k);
    CHECK(loss_device_aux(with_devices(r, E), layout).item() ==
          Approx(loss_switch_aux(r, layout).item()).epsilon(1e-12));
    const Tensor one = loss_device_aux(with_devices(r, 1), layout);
    CHECK(one.item() == Approx(1.0).epsilon(1e-12));
    engine::backward(one);
    REQUIRE(w.grad().defined());
    double largest = 0;
    for (double g : w.grad().to_vector()) largest = std::max(largest, std::fabs(g));
    CHECK(largest < 1e-12);  // sum_i P_i = 1 whatever the router does
  }
}

TEST_CASE("device_aux: the global-batch scope's counts give F_d, the micro-batch gives P'_d", "[balance][device_aux]") {
  // This micro-batch collapsed onto device 0, while the step's counts (32 tokens) put 24 slots
  // on device 0 and 8 on device 1.
  const std::vector<int32_t> all_zero(8, 0);
  Routing r = with_devices(one_per_token(one_hot_rows(8, 4, all_zero), 4, all_zero), 2);
  CHECK(loss_device_aux(r, SequenceLayout{1, 8}).item() == Approx(2.0).epsilon(1e-12));
  r.balance_counts = {16, 8, 4, 4};
  r.balance_tokens = 32;
  // F = (24/32, 8/32) = (3/4, 1/4), P' = (1, 0): L = 2 * 3/4 = 1.5.
  CHECK(loss_device_aux(r, SequenceLayout{1, 8}).item() == Approx(1.5).epsilon(1e-12));
  r.balance_counts = {8, 8, 8, 8};
  CHECK(loss_device_aux(r, SequenceLayout{1, 8}).item() == Approx(1.0).epsilon(1e-12));
}

TEST_CASE("device_aux refuses a device count that does not divide the experts", "[balance][device_aux]") {
  Routing r = balanced(8, 4);
  for (int64_t D : {3, 0, 8}) {
    INFO("devices " << D);
    CHECK_THROWS_AS(loss_device_aux(with_devices(r, D), SequenceLayout{2, 4}), std::invalid_argument);
    CHECK_THROWS_WITH(
        loss_device_aux(with_devices(r, D), SequenceLayout{2, 4}),
        Catch::Contains("loss_device_aux") && Catch::Contains("into " + std::to_string(D) + " devices: 4 experts"));
  }
}

TEST_CASE("device_aux: a nonzero gradient through the router that finite differences confirm",
          "[balance][device_aux][gradcheck]") {
  const int64_t E = 4, k = 2;
  Tensor x = engine::testing::random_tensor({6, 3}, 21);
  Tensor w = engine::testing::random_tensor({E, 3}, 22), w_noise = engine::testing::random_tensor({E, 3}, 23, 0.5);
  const SequenceLayout layout{2, 3};
  auto largest_gradient = [&](RouterKind kind, double* value) {
    Tensor leaf = w.clone().set_requires_grad(true);
    const Tensor loss = loss_device_aux(with_devices(route_random(kind, x, leaf, w_noise, E, k), 2), layout);
    *value = loss.item();
    engine::backward(loss);
    double largest = 0;
    for (double g : leaf.grad().to_vector()) largest = std::max(largest, std::fabs(g));
    return largest;
  };
  double value = 0;
  for (RouterKind kind : {RouterKind::topk_softmax, RouterKind::noisy_topk, RouterKind::sigmoid_topk}) {
    INFO("router " << router_info(kind).key);
    CHECK(largest_gradient(kind, &value) > 1e-3);  // the check below would pass on a loss without gradient
    REQUIRE_GRADCHECK(
        [&](const Ins& in) {
          return loss_device_aux(with_devices(route_random(kind, in[0], in[1], in[2], E, k), 2), layout);
        },
        Ins({x, w, w_noise}));
  }
  // expert_choice gives every expert C' slots, so every device the same share, and the loss is
  // E C' / (N k) (here C' = 3: 4 * 3 / 12 = 1) whatever the router does, as switch_aux is.
  CHECK(largest_gradient(RouterKind::expert_choice, &value) < 1e-12);
  CHECK(value == Approx(1.0).epsilon(1e-12));
}
