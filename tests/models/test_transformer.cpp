// The transformer: shapes, names, initial loss, a gradient check of the whole model with
// balance losses, training that lowers the loss, and collapse vs. balancing on skewed data.
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>

#include "data/synthetic.h"
#include "models/transformer.h"
#include "tests/support/gradcheck.h"

using namespace engine;
using namespace moe;

namespace {
ModelConfig tiny_config() {
  ModelConfig c;
  c.vocab_size = 11;
  c.d_model = 8;
  c.n_layers = 2;
  c.n_heads = 2;
  c.max_seq_len = 6;
  c.d_ff = 12;
  c.moe.router.num_experts = 3;
  c.moe.router.top_k = 2;
  c.moe.d_expert = 6;
  c.init_std = 0.3;
  c.embedding_init_std = 0.5;
  c.dtype = DType::f64;
  return c;
}

Tensor ids(const std::vector<int32_t>& v, int64_t B, int64_t T) { return Tensor::from_vector(v, {B, T}); }

// Trains a fresh model with AdamW (and loss-free bias updates where configured), calling
// observe(step, result) after every step.
void train(const ModelConfig& c, double lr, data::TokenSource& source, int steps, int64_t batch, int64_t seq_len,
           const std::function<void(int, const ForwardResult&)>& observe) {
  TransformerLM model(c);
  std::vector<ParamGroupEntry> groups;
  for (const NamedParam& p : model.params().all()) groups.push_back({p.name, p.tensor, p.decay});
  AdamWConfig opt;
  opt.lr = lr;
  AdamW adamw(groups, opt);
  for (int step = 0; step < steps; ++step) {
    data::Batch b = source.next_batch(batch, seq_len);
    ForwardResult out = model.forward(b.inputs, b.targets, true);
    backward(out.loss);
    adamw.step();
    adamw.zero_grad();
    for (size_t l = 0; l < out.routings.size(); ++l) model.moe_layers()[l]->update_bias(out.routings[l].counts);
    observe(step, out);
  }
}

// std / mean of the per-expert counts (population std): 0 when balanced.
double counts_cv(const std::vector<int64_t>& counts) {
  double mean = 0, var = 0;
  for (int64_t c : counts) mean += static_cast<double>(c) / static_cast<double>(counts.size());
  for (int64_t c : counts) var += (c - mean) * (c - mean) / static_cast<double>(counts.size());
  return mean > 0 ? std::sqrt(var) / mean : 0.0;
}

// Trains on synthetic data and returns the load CV over the last 10 steps, averaged over MoE layers.
double train_and_measure_cv(const ModelConfig& c, int steps) {
  data::SyntheticDomains source(c.vocab_size, 4, 11, 0.9);
  double cv = 0;
  int measured = 0;
  train(c, 3e-3, source, steps, 8, 32, [&](int step, const ForwardResult& out) {
    if (step < steps - 10) return;
    for (const Routing& r : out.routings) cv += counts_cv(r.counts) / static_cast<double>(out.routings.size());
    ++measured;
  });
  return cv / measured;
}
}  // namespace

TEST_CASE("transformer: shapes, MoE placement, names, initial loss near ln V", "[transformer]") {
  ModelConfig c = tiny_config();
  c.moe_layers = MoePlacement::every_n;
  c.moe_every_n = 2;
  c.first_dense = 1;  // layer 0 dense, layer 1 MoE
  c.init_std = 0.02;
  c.embedding_init_std = 0.02;
  TransformerLM model(c);
  CHECK(model.params().get("layers.0.mlp.fc1.weight").shape() == Shape{12, 8});
  CHECK(model.params().get("layers.1.moe.experts.2.fc2.weight").shape() == Shape{8, 6});
  CHECK(model.params().get("layers.1.attn.qkv.weight").shape() == Shape{24, 8});
  CHECK(model.moe_layers().size() == 1);
  std::vector<int32_t> v(2 * 5);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int32_t>(i % 11);
  std::vector<int32_t> next(v.size());
  for (size_t i = 0; i < v.size(); ++i) next[i] = static_cast<int32_t>((v[i] * 7 + 3) % 11);
  ForwardResult out = model.forward(ids(v, 2, 5), ids(next, 2, 5), false);
  CHECK(out.logits.shape() == Shape{2, 5, 11});
  CHECK(out.ce.item() == Approx(std::log(11.0)).epsilon(0.02));
  CHECK(out.moe_layer_index == std::vector<int64_t>{1});
  CHECK(out.terms.count("switch_aux") == 1);  // logged even with coefficient 0
  CHECK(out.terms.count("load") == 0);        // nothing to measure without noise
  CHECK_THROWS_WITH(model.forward(ids({0, 11}, 1, 2), Tensor(), false), Catch::Contains("token id 11 at position 1"));
  CHECK_THROWS_WITH(model.forward(ids(std::vector<int32_t>(7, 0), 1, 7), Tensor(), false),
                    Catch::Contains("exceeds max_seq_len 6"));
  clear_tape();
}

TEST_CASE("transformer: whole-model gradient check with balance losses", "[transformer][gradcheck]") {
  for (int variant = 0; variant < 2; ++variant) {
    ModelConfig c = tiny_config();
    c.loss_coefs = {
        {"switch_aux", 0.1}, {"z_loss", 0.01}, {"importance", 0.05}, {"sequence_aux", 0.1}, {"device_aux", 0.1}};
    c.moe.device_groups = 3;  // one expert per device: device_aux is switch_aux here
    if (variant == 1) {       // the other half of every option
      c.moe.router.num_experts = 4;
      c.moe.device_groups = 2;  // two experts per device
      c.norm = NormKind::rmsnorm;
      c.position = PositionKind::rope;
      c.activation = ExpertActivation::swiglu;
      c.tie_embeddings = false;
      c.moe.num_shared_experts = 1;
      c.moe.router.kind = RouterKind::noisy_topk;
      c.loss_coefs["load"] = 0.1;
    }
    INFO("variant " << variant);
    TransformerLM model(c);
    std::vector<int32_t> in = {1, 4, 7, 2, 9, 3, 0, 10}, tg = {4, 7, 2, 9, 3, 0, 10, 5};
    auto f = [&](const std::vector<Tensor>&) {
      model.noise_generator().set_state(5, 0);  // the same router noise at every evaluation
      return model.forward(ids(in, 2, 4), ids(tg, 2, 4), true).loss;
    };
    std::vector<Tensor> checked;
    for (const char* name : {"tok_embedding.weight", "layers.0.attn.qkv.weight", "layers.1.moe.router.weight",
                             "layers.0.moe.experts.1.fc1.weight", "layers.1.norm2.weight"}) {
      std::string n = name;
      if (variant == 1 && n.find("fc1") != std::string::npos) n = "layers.0.moe.experts.1.gate_proj.weight";
      checked.push_back(model.params().get(n));
    }
    if (variant == 1) checked.push_back(model.params().get("layers.0.moe.router.noise.weight"));
    REQUIRE_GRADCHECK(f, checked);
  }
}

TEST_CASE("transformer: training lowers the loss on synthetic data", "[transformer][training]") {
  ModelConfig c = tiny_config();
  c.dtype = DType::f32;
  c.vocab_size = 16;
  c.d_model = 32;
  c.max_seq_len = 32;
  c.init_std = 0.02;
  c.embedding_init_std = 0.02;
  c.d_ff = 64;
  c.moe.d_expert = 32;
  data::SyntheticDomains source(16, 2, 3, 0.95);
  double first = 0, last = 0;
  train(c, 1e-2, source, 150, 8, 16, [&](int step, const ForwardResult& out) {
    if (step < 5) first += out.ce.item() / 5;
    if (step >= 145) last += out.ce.item() / 5;
  });
  INFO("first " << first << " last " << last);
  CHECK(last < first - 0.5);
}

TEST_CASE("skewed data: routers collapse without balancing, switch_aux and loss-free bias hold them back",
          "[transformer][collapse][balance]") {
  ModelConfig c;
  c.vocab_size = 64;
  c.d_model = 32;
  c.n_layers = 2;
  c.n_heads = 2;
  c.max_seq_len = 32;
  c.d_ff = 32;
  c.moe.router.num_experts = 8;
  c.moe.router.top_k = 2;
  c.moe.d_expert = 32;
  // Large embeddings make routers confident early: the collapse recipe of the reference notes.
  // (At 1.0 the fixed-size bias steps cannot catch up within a test's budget, as noted there.)
  c.embedding_init_std = 0.3;
  const int steps = 150;
  const double plain = train_and_measure_cv(c, steps);
  ModelConfig aux = c;
  aux.loss_coefs["switch_aux"] = 0.1;
  const double with_aux = train_and_measure_cv(aux, steps);
  ModelConfig bias = c;
  bias.moe.bias_update_rate = 0.01;
  const double with_bias = train_and_measure_cv(bias, steps);
  INFO("load CV: none " << plain << ", switch_aux " << with_aux << ", loss-free bias " << with_bias);
  CHECK(plain > 1.2);  // near sqrt(3) = 1.73: two of eight experts take every slot
  CHECK(with_aux < 0.6 * plain);
  CHECK(with_bias < 0.6 * plain);
}
