// Routing options (models/routers/options.def) and the sinkhorn router: each option's effect on
// hand-checked logits, its refusal where it does not apply, and that every router taking an
// option is changed by it.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <numeric>
#include <sstream>

#include "models/router.h"
#include "tests/models/router_fixture.h"

using namespace engine;
using namespace moe;
using moe::testing::Fixture;
using moe::testing::softmax_row;

namespace {
double sigmoid(double z) { return 1 / (1 + std::exp(-z)); }

RouterConfig router(RouterKind kind, int64_t E, int64_t k) {
  RouterConfig cfg;
  cfg.kind = kind;
  cfg.num_experts = E;
  cfg.top_k = k;
  return cfg;
}
}  // namespace

TEST_CASE("softmax_order after_topk: top-k of the logits + b, gates a softmax over the k", "[router][softmax_order]") {
  Fixture f({{3, 1, 0, 2}});
  const std::vector<float> bias = {0.0f, 0.5f, 0.0f, 0.0f};
  RouterConfig cfg = router(RouterKind::topk_softmax, 4, 2);
  // Before: p + b = [.64, .59, .03, .24] picks {0, 1}; after: z + b = [3, 1.5, 0, 2] picks {0, 3}.
  Routing before = f.run(cfg, &bias);
  CHECK(before.assigned_expert == std::vector<int32_t>{0, 1});
  const auto p = softmax_row({3, 1, 0, 2});
  CHECK(before.assigned_gate.to_vector()[1] == Approx(p[1]).epsilon(1e-12));
  cfg.options.softmax_order = SoftmaxOrder::after_topk;
  Routing after = f.run(cfg, &bias);
  CHECK(after.assigned_expert == std::vector<int32_t>{0, 3});
  const auto g = after.assigned_gate.to_vector();
  CHECK(g[0] == Approx(std::exp(3.0) / (std::exp(3.0) + std::exp(2.0))).epsilon(1e-12));
  CHECK(g[0] + g[1] == Approx(1.0).epsilon(1e-12));
  // The losses still read p over all E experts.
  CHECK(after.probs.to_vector()[1] == Approx(p[1]).epsilon(1e-12));
}

TEST_CASE("routed_scaling multiplies every routed gate and nothing else", "[router][routed_scaling]") {
  Fixture f({{3, 1, 0, 2}, {0, 0, 5, 1}, {2, 4, 1, 0}});
  for (RouterKind kind : {RouterKind::topk_softmax, RouterKind::sigmoid_topk, RouterKind::sinkhorn}) {
    INFO(router_info(kind).key);
    RouterConfig cfg = router(kind, 4, 2);
    const Routing plain = f.run(cfg);
    cfg.options.routed_scaling = 2.5;
    const Routing scaled = f.run(cfg);
    CHECK(scaled.assigned_expert == plain.assigned_expert);
    CHECK(scaled.probs.to_vector() == plain.probs.to_vector());
    const auto a = plain.slot_gate.to_vector(), b = scaled.slot_gate.to_vector();
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) CHECK(b[i] == Approx(2.5 * a[i]).epsilon(1e-12));
  }
}

TEST_CASE("expert groups: each token keeps its best groups by the sum of their two largest scores",
          "[router][expert_groups]") {
  // sigmoid scores: token 0 [.993, .5 | .953, .948]: group sums 1.49 < 1.90, so group 1 wins
  // although the single best score is in group 0; token 1 [.5, .982 | .731, .731]: group 0.
  Fixture f({{5, 0, 3, 2.9}, {0, 4, 1, 1}});
  RouterConfig cfg = router(RouterKind::sigmoid_topk, 4, 2);
  CHECK(f.run(cfg).assigned_expert == std::vector<int32_t>{0, 2, 1, 2});  // no groups
  cfg.options.expert_groups = 2;
  CHECK(f.run(cfg).assigned_expert == std::vector<int32_t>{0, 2, 1, 2});  // topk_groups 0: every group
  cfg.options.topk_groups = 1;
  Routing r = f.run(cfg);
  CHECK(r.assigned_expert == std::vector<int32_t>{2, 3, 1, 0});
  const auto g = r.assigned_gate.to_vector();
  CHECK(g[0] == Approx(sigmoid(3) / (sigmoid(3) + sigmoid(2.9))).epsilon(1e-12));
  CHECK(g[3] == Approx(sigmoid(0) / (sigmoid(0) + sigmoid(4))).epsilon(1e-12));
  // The loss-free bias counts in the groups' ranks: lifting expert 1 moves token 0 to group 0.
  const std::vector<float> bias = {0.0f, 0.5f, 0.0f, 0.0f};
  CHECK(f.run(cfg, &bias).assigned_expert == std::vector<int32_t>{1, 0, 1, 0});
}

TEST_CASE("sinkhorn: a balanced selection in training, plain top-k in evaluation, gates from softmax",
          "[router][sinkhorn]") {
  // Every token prefers expert 0; their second choices differ.
  std::vector<std::vector<double>> z;
  for (int t = 0; t < 8; ++t) z.push_back({4.0, 1.0 + 0.3 * (t % 3), 1.0 + 0.2 * (t % 4), 1.0 + 0.25 * (t % 5)});
  Fixture f(z);
  RouterConfig cfg = router(RouterKind::sinkhorn, 4, 1);
  const Routing eval = f.run(cfg);
  CHECK(eval.counts == std::vector<int64_t>{8, 0, 0, 0});
  const Routing train = f.run(cfg, nullptr, true);
  CHECK(*std::max_element(train.counts.begin(), train.counts.end()) <= 3);
  CHECK(*std::min_element(train.counts.begin(), train.counts.end()) >= 1);
  const auto g = train.assigned_gate.to_vector();
  for (size_t t = 0; t < 8; ++t) CHECK(g[t] == Approx(softmax_row(z[t])[train.assigned_expert[t]]).epsilon(1e-12));
}

TEST_CASE("eval_capacity_factor: evaluation's own capacity; training keeps capacity_factor", "[router][capacity]") {
  Fixture f({{1, 0}, {2, 0}, {3, 0}, {4, 0}});
  RouterConfig cfg = router(RouterKind::topk_softmax, 2, 1);
  cfg.capacity_factor = 0.5;  // C = 1
  CHECK(f.run(cfg).dropped == 3);
  cfg.options.eval_capacity_factor = 0.0;  // dropless in evaluation
  CHECK(f.run(cfg).dropped == 0);
  CHECK(f.run(cfg, nullptr, true).dropped == 3);
  cfg.options.eval_capacity_factor = 1.0;  // C = 2
  CHECK(f.run(cfg).dropped == 2);
  cfg.kind = RouterKind::expert_choice;  // its selection is the capacity
  cfg.options.eval_capacity_factor = 2.0;
  CHECK(f.run(cfg).counts == std::vector<int64_t>{4, 4});
  CHECK(f.run(cfg, nullptr, true).counts == std::vector<int64_t>{1, 1});
}

TEST_CASE("force_balance: slot j of token t goes to expert (t k + j) mod E, gated by the router's scores",
          "[router][force_balance]") {
  Fixture f({{3, 1, 0, 2}, {0, 0, 5, 1}, {2, 4, 1, 0}, {9, 0, 0, 0}, {1, 1, 1, 1}, {0, 2, 0, 7}});
  RouterConfig cfg = router(RouterKind::topk_softmax, 4, 2);
  cfg.options.force_balance = true;
  const std::vector<float> bias = {5.0f, 0.0f, 0.0f, 0.0f};  // ignored: the assignment is fixed
  Routing r = f.run(cfg, &bias);
  CHECK(r.assigned_expert == std::vector<int32_t>{0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3});
  CHECK(r.counts == std::vector<int64_t>{3, 3, 3, 3});
  const auto g = r.assigned_gate.to_vector();
  CHECK(g[3] == Approx(softmax_row({0, 0, 5, 1})[3]).epsilon(1e-12));
  cfg.kind = RouterKind::sigmoid_topk;  // its gates: the forced experts' scores renormalized
  const auto s = f.run(cfg).assigned_gate.to_vector();
  CHECK(s[0] == Approx(sigmoid(3) / (sigmoid(3) + sigmoid(1))).epsilon(1e-12));
}

TEST_CASE("input_jitter: the router's input times U(1 - eps, 1 + eps) in training only, replayable",
          "[router][input_jitter]") {
  const int64_t N = 64;
  std::vector<std::vector<double>> z(N, {1.0, -0.5, 2.0});
  Fixture f(z);  // x = identity: the jittered logits are W[e, t] * u[t, t]
  RouterConfig cfg = router(RouterKind::topk_softmax, 3, 1);
  cfg.options.input_jitter = 0.2;
  Generator noise(5);
  const auto jittered = f.run(cfg, nullptr, true, &noise).logits.to_vector();
  std::vector<double> u(N);
  for (int64_t t = 0; t < N; ++t) {
    u[t] = jittered[t * 3] / 1.0;
    CHECK(jittered[t * 3 + 2] == Approx(2.0 * u[t]).epsilon(1e-6));  // one multiplier per input element
    CHECK(u[t] >= 0.8 - 1e-6);
    CHECK(u[t] <= 1.2 + 1e-6);
  }
  const auto [lo, hi] = std::minmax_element(u.begin(), u.end());
  CHECK(*hi - *lo > 0.3);  // spread over most of [0.8, 1.2]
  CHECK(std::accumulate(u.begin(), u.end(), 0.0) / N == Approx(1.0).margin(0.05));
  CHECK(f.run(cfg).logits.to_vector()[0] == 1.0);  // evaluation: no jitter
  // A replayed multiplier is used as given.
  std::vector<double> given(N * N, 1.0);
  given[0] = 1.1;
  const auto replayed = f.run(cfg, nullptr, true, nullptr, Tensor::from_vector(given, {N, N})).logits.to_vector();
  CHECK(replayed[0] == Approx(1.1).epsilon(1e-12));
  CHECK(replayed[3] == 1.0);
}

TEST_CASE("routing options are refused by the model where they do not apply", "[router][catalog]") {
  Fixture f({{3, 1, 0, 2}});
  RouterConfig cfg = router(RouterKind::sigmoid_topk, 4, 2);
  cfg.options.softmax_order = SoftmaxOrder::after_topk;
  CHECK_THROWS_WITH(f.run(cfg), Catch::Contains("route: moe.softmax_order: router sigmoid_topk does not take "
                                                "softmax_order (routers that do: topk_softmax)"));
  cfg = router(RouterKind::topk_softmax, 4, 2);
  cfg.options.expert_groups = 3;
  CHECK_THROWS_WITH(f.run(cfg), Catch::Contains("moe.expert_groups: must divide moe.num_experts (4), got 3"));
  cfg.options.expert_groups = 4;
  cfg.options.topk_groups = 1;
  CHECK_THROWS_WITH(f.run(cfg), Catch::Contains("leaves 1 experts to choose from"));
}

TEST_CASE("every router's options are options of the table, and each changes that router's routing",
          "[router][catalog]") {
  std::vector<std::vector<double>> z;
  Generator gen(11);
  const auto values = randn({16, 4}, gen, 0.0, 2.0, DType::f64).to_vector();
  for (int t = 0; t < 16; ++t) z.push_back({values[t * 4], values[t * 4 + 1], values[t * 4 + 2], values[t * 4 + 3]});
  Fixture f(z);
  // A value other than the default for each option, with what it needs beside it.
  auto set = [](const std::string& key, RouterConfig& cfg) {
    RoutingOptions& o = cfg.options;
    if (key == "input_jitter") o.input_jitter = 0.5;
    if (key == "softmax_order") o.softmax_order = SoftmaxOrder::after_topk;
    if (key == "routed_scaling") o.routed_scaling = 3.0;
    if (key == "expert_groups" || key == "topk_groups") o.expert_groups = 2, o.topk_groups = 1;
    if (key == "sinkhorn_iterations") o.sinkhorn_iterations = 1;
    if (key == "eval_capacity_factor") o.eval_capacity_factor = 0.25;
    if (key == "force_balance") o.force_balance = true;
  };
  const std::vector<int32_t> ids = {5, 17, 3, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  for (const RouterInfo& info : router_infos()) {
    std::istringstream listed(info.options);
    for (std::string key; listed >> key;) {
      INFO("router " << info.key << " lists " << key);
      CHECK(std::any_of(routing_option_infos().begin(), routing_option_infos().end(),
                        [&](const RoutingOptionInfo& o) { return key == o.key; }));
    }
    for (const RoutingOptionInfo& option : routing_option_infos()) {
      if (!info.takes(option)) continue;
      INFO("router " << info.key << " option " << option.key);
      RouterConfig cfg = router(info.kind, 4, info.experts_per_token == ExpertsPerToken::one ? 1 : 2);
      cfg.capacity_factor = info.capacity == CapacityRule::required ? 1.0 : 0.0;
      auto run = [&](const RouterConfig& c) {
        Generator noise(3);
        RouteInputs in;
        in.x = f.x;
        in.token_ids = &ids;
        in.training = std::string(option.key) != "eval_capacity_factor";
        in.noise = &noise;
        RouterWeights w{info.weights == RouterWeightKind::none ? Tensor() : f.w,
                        info.weights == RouterWeightKind::gate_noise ? f.w : Tensor()};
        return route(c, w, in);
      };
      const Routing plain = run(cfg);
      set(option.key, cfg);
      const Routing changed = run(cfg);
      CHECK((plain.assigned_expert != changed.assigned_expert ||
             plain.slot_gate.to_vector() != changed.slot_gate.to_vector() || plain.dropped != changed.dropped));
    }
  }
}
