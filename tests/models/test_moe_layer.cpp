// The MoE layer: equal to a per-token reference, gradients through every router, drops.
#include <catch2/catch.hpp>
#include <cmath>

#include "models/moe_layer.h"
#include "tests/support/gradcheck.h"

using namespace engine;
using namespace moe;

namespace {
using Ins = std::vector<Tensor>;

MoeLayerConfig layer_config(RouterKind kind, int64_t E, int64_t k, ExpertActivation act = ExpertActivation::gelu) {
  MoeLayerConfig c;
  c.router.kind = kind;
  c.router.num_experts = E;
  c.router.top_k = k;
  c.d_model = 4;
  c.d_expert = 5;
  c.activation = act;
  c.dtype = DType::f64;
  return c;
}

// y_t = sum over t's kept slots of gate * expert(x_t), token by token.
std::vector<double> per_token_reference(const MoeLayer& layer, const Tensor& x, const Routing& r) {
  const int64_t N = x.size(0), d = x.size(1);
  std::vector<double> y(N * d, 0.0);
  const auto tokens = r.slot_token.to_int_vector();
  const auto gates = r.slot_gate.to_vector();
  for (int64_t e = 0; e < r.num_experts; ++e)
    for (int64_t s = r.expert_offsets[e]; s < r.expert_offsets[e + 1]; ++s) {
      Tensor row = slice(x, 0, tokens[s], tokens[s] + 1);
      const auto out = layer.experts()[e].forward(row).to_vector();
      for (int64_t j = 0; j < d; ++j) y[tokens[s] * d + j] += gates[s] * out[j];
    }
  return y;
}
}  // namespace

TEST_CASE("MoE layer output equals the per-token reference, with and without drops", "[moe_layer]") {
  for (double capacity : {0.0, 0.6}) {
    for (ExpertActivation act : {ExpertActivation::gelu, ExpertActivation::swiglu}) {
      INFO("capacity " << capacity << " swiglu " << (act == ExpertActivation::swiglu));
      ParamStore params;
      Generator gen(1);
      MoeLayerConfig cfg = layer_config(RouterKind::topk_softmax, 4, 2, act);
      cfg.router.capacity_factor = capacity;
      MoeLayer layer(cfg, params, "moe", 0.5, 0.5, gen);
      Tensor x = engine::testing::random_tensor({1, 9, 4}, 2);
      MoeForward out = layer.forward(x, nullptr, false, nullptr);
      if (capacity > 0) CHECK(out.routing.dropped > 0);
      const auto ref = per_token_reference(layer, reshape(x, {9, 4}), out.routing);
      const auto got = out.output.to_vector();
      for (size_t i = 0; i < ref.size(); ++i) REQUIRE(got[i] == Approx(ref[i]).margin(1e-12));
    }
  }
}

TEST_CASE("gradients flow through every router into inputs, router and experts", "[moe_layer][router][gradcheck]") {
  struct Case {
    RouterKind kind;
    int64_t k;
    double capacity;
  };
  for (const Case& c : {Case{RouterKind::topk_softmax, 2, 0.0}, Case{RouterKind::switch_k1, 1, 0.0},
                        Case{RouterKind::noisy_topk, 2, 0.0}, Case{RouterKind::sigmoid_topk, 2, 0.0},
                        Case{RouterKind::expert_choice, 2, 1.0}, Case{RouterKind::topk_softmax, 2, 0.75}}) {
    INFO("router " << router_info(c.kind).key << " capacity " << c.capacity);
    ParamStore params;
    Generator gen(3);
    MoeLayerConfig cfg = layer_config(c.kind, 3, c.k);
    cfg.router.capacity_factor = c.capacity;
    cfg.router.drop_policy = DropPolicy::score;
    cfg.num_shared_experts = 1;
    MoeLayer layer(cfg, params, "moe", 0.7, 0.7, gen);
    Tensor x = engine::testing::random_tensor({2, 3, 4}, 4);
    auto f = [&](const Ins& in) {
      Generator noise(9);  // the same noise at every evaluation
      return layer.forward(in[0], nullptr, true, &noise).output;
    };
    Ins inputs{x, layer.router_weights().gate, layer.experts()[0].w1, layer.experts()[1].b2};
    if (c.kind == RouterKind::noisy_topk) inputs.push_back(layer.router_weights().noise);
    REQUIRE_GRADCHECK(f, inputs);
  }
}

TEST_CASE("routing options: gradients through jitter, softmax after top-k, scaling, groups, sinkhorn, forced balance",
          "[moe_layer][router][routing][gradcheck]") {
  struct Case {
    const char* name;
    RouterKind kind;
    void (*set)(RoutingOptions&);
  };
  const Case cases[] = {
      {"jitter and softmax after top-k", RouterKind::topk_softmax,
       [](RoutingOptions& o) { o.input_jitter = 0.3, o.softmax_order = SoftmaxOrder::after_topk; }},
      {"routed scaling", RouterKind::sigmoid_topk, [](RoutingOptions& o) { o.routed_scaling = 2.5; }},
      {"expert groups", RouterKind::sigmoid_topk, [](RoutingOptions& o) { o.expert_groups = 2, o.topk_groups = 1; }},
      {"noisy top-k in groups with jitter", RouterKind::noisy_topk,
       [](RoutingOptions& o) { o.expert_groups = 2, o.topk_groups = 1, o.input_jitter = 0.2; }},
      {"sinkhorn with jitter", RouterKind::sinkhorn, [](RoutingOptions& o) { o.input_jitter = 0.2; }},
      {"forced balance", RouterKind::topk_softmax, [](RoutingOptions& o) { o.force_balance = true; }},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    ParamStore params;
    Generator gen(3);
    MoeLayerConfig cfg = layer_config(c.kind, 4, 2);
    c.set(cfg.router.options);
    MoeLayer layer(cfg, params, "moe", 0.7, 0.7, gen);
    Tensor x = engine::testing::random_tensor({2, 3, 4}, 4);
    auto f = [&](const Ins& in) {
      Generator noise(9);  // the same draws at every evaluation
      return layer.forward(in[0], nullptr, true, &noise).output;
    };
    Ins inputs{x, layer.router_weights().gate, layer.experts()[0].w1};
    if (c.kind == RouterKind::noisy_topk) inputs.push_back(layer.router_weights().noise);
    REQUIRE_GRADCHECK(f, inputs);
  }
}

TEST_CASE("swiglu experts: gradients reach gate, up and down projections", "[moe_layer][swiglu][gradcheck]") {
  ParamStore params;
  Generator gen(7);
  MoeLayer layer(layer_config(RouterKind::topk_softmax, 3, 2, ExpertActivation::swiglu), params, "moe", 0.7, 0.7, gen);
  const ExpertMlp& e = layer.experts()[2];
  REQUIRE_GRADCHECK([&](const Ins& in) { return layer.forward(in[0], nullptr, true, nullptr).output; },
                    Ins({engine::testing::random_tensor({1, 5, 4}, 8), e.w1, e.w_up, e.w2}));
}

TEST_CASE("hash router: experts and inputs get gradients, gates are constant", "[moe_layer][hash][gradcheck]") {
  ParamStore params;
  Generator gen(5);
  MoeLayer layer(layer_config(RouterKind::hash, 3, 1), params, "moe", 0.7, 0.7, gen);
  CHECK_FALSE(layer.router_weights().gate.defined());
  std::vector<int32_t> ids = {1, 2, 3, 4, 5, 6};
  REQUIRE_GRADCHECK([&](const Ins& in) { return layer.forward(in[0], &ids, true, nullptr).output; },
                    Ins({engine::testing::random_tensor({1, 6, 4}, 6), layer.experts()[1].w2}));
}

TEST_CASE("loss-free bias update follows sign(mean - count)", "[moe_layer][bias]") {
  ParamStore params;
  Generator gen(1);
  MoeLayerConfig cfg = layer_config(RouterKind::topk_softmax, 4, 1);
  cfg.bias_update_rate = 0.5;
  MoeLayer layer(cfg, params, "moe", 0.1, 0.1, gen);
  layer.update_bias({10, 2, 4, 4});  // mean 5
  CHECK(layer.bias() == std::vector<float>{-0.5f, 0.5f, 0.5f, 0.5f});
  layer.update_bias({5, 5, 5, 5});
  CHECK(layer.bias() == std::vector<float>{-0.5f, 0.5f, 0.5f, 0.5f});
  CHECK_THROWS_WITH(layer.update_bias({1, 2}), Catch::Contains("one count per expert"));
}

TEST_CASE("parameter names mirror PyTorch state_dict paths", "[moe_layer][params]") {
  ParamStore params;
  Generator gen(1);
  MoeLayerConfig cfg = layer_config(RouterKind::noisy_topk, 2, 1, ExpertActivation::swiglu);
  cfg.num_shared_experts = 1;
  MoeLayer layer(cfg, params, "layers.3.moe", 0.1, 0.1, gen);
  CHECK(params.get("layers.3.moe.router.weight").shape() == Shape{2, 4});
  CHECK(params.get("layers.3.moe.router.noise.weight").shape() == Shape{2, 4});
  CHECK(params.get("layers.3.moe.experts.1.gate_proj.weight").shape() == Shape{5, 4});
  CHECK(params.get("layers.3.moe.experts.1.down_proj.weight").shape() == Shape{4, 5});
  CHECK(params.get("layers.3.moe.shared_experts.0.up_proj.weight").shape() == Shape{5, 4});
  CHECK_THROWS_WITH(params.get("layers.3.moe.experts.2.fc1.weight"), Catch::Contains("no parameter named"));
}
