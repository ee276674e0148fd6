// The whole model and the training loop on CUDA against the CPU: for every router, the loss,
// each balance term and every parameter's gradient of one forward and backward, and the losses
// of a few moe-train steps. Parameters are drawn from the same Philox stream on both devices,
// so the two models start identical. Part of cuda_tests: skipped without a device.
#include <catch2/catch.hpp>
#include <cmath>
#include <sstream>

#include "models/transformer.h"
#include "tools/lib/train/trainer.h"

using namespace engine;

namespace {
double rel(double a, double b) { return std::fabs(a - b) / std::max(std::fabs(a), 1e-12); }

double tensor_rel(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  double err = 0, scale = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    err = std::max(err, std::fabs(x[i] - y[i]));
    scale = std::max(scale, std::fabs(x[i]));
  }
  return scale > 0 ? err / scale : err;
}

moe::ModelConfig config(moe::RouterKind router, Device device) {
  moe::ModelConfig c;
  c.vocab_size = 64;
  c.d_model = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.max_seq_len = 16;
  c.moe.router.kind = router;
  c.moe.router.num_experts = 4;
  c.moe.router.top_k = router == moe::RouterKind::switch_k1 || router == moe::RouterKind::hash ? 1 : 2;
  c.moe.router.capacity_factor = router == moe::RouterKind::expert_choice ? 1.0 : 0.0;
  c.moe.d_expert = 24;
  c.embedding_init_std = 0.5;
  c.loss_coefs = {
      {"switch_aux", 0.1}, {"importance", 0.1}, {"z_loss", 0.01}, {"sequence_aux", 0.1}, {"device_aux", 0.1}};
  c.moe.device_groups = 2;
  if (router == moe::RouterKind::noisy_topk) c.loss_coefs["load"] = 0.1;
  c.device = device;
  return c;
}
}  // namespace

TEST_CASE("every router: CUDA model matches the CPU model in loss, terms and gradients", "[cuda][model]") {
  const auto router = GENERATE(moe::RouterKind::topk_softmax, moe::RouterKind::switch_k1, moe::RouterKind::noisy_topk,
                               moe::RouterKind::sigmoid_topk, moe::RouterKind::expert_choice, moe::RouterKind::hash);
  INFO("router " << moe::router_info(router).key);
  moe::TransformerLM cpu(config(router, Device::cpu())), gpu(config(router, Device::cuda()));
  std::vector<int32_t> tokens(2 * 13);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 37 + i * i * 5 + 11) % 64);
  std::vector<int32_t> in, tg;
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < 12; ++t) {
      in.push_back(tokens[b * 13 + t]);
      tg.push_back(tokens[b * 13 + t + 1]);
    }
  const Tensor inputs = Tensor::from_vector(in, {2, 12}), targets = Tensor::from_vector(tg, {2, 12});
  moe::ForwardResult a = cpu.forward(inputs, targets, true), b = gpu.forward(inputs, targets, true);
  CHECK(rel(a.loss.item(), b.loss.item()) < 1e-5);
  for (const auto& [name, value] : a.terms) {
    INFO("term " << name);
    CHECK(rel(value, b.terms.at(name)) < 1e-5);
  }
  backward(a.loss);
  backward(b.loss);
  for (size_t i = 0; i < cpu.params().all().size(); ++i) {
    const moe::NamedParam &p = cpu.params().all()[i], &q = gpu.params().all()[i];
    INFO("grad " << p.name);
    REQUIRE(p.tensor.grad().defined() == q.tensor.grad().defined());
    if (p.tensor.grad().defined()) CHECK(tensor_rel(p.tensor.grad(), q.tensor.grad()) < 1e-4);
  }
}

TEST_CASE("moe-train's loop with device cuda follows the CPU run", "[cuda][trainer]") {
  runconfig::RunConfig cfg = runconfig::parse_run_config(
      "model: {d_model: 64, n_layers: 2, n_heads: 4, max_seq_len: 32}\n"
      "moe: {num_experts: 4, d_expert: 64, losses: {switch_aux: 0.01, z_loss: 0.001}, bias_update_rate: 0.001}\n"
      "schedule: {warmup_steps: 2}\ntraining: {steps: 5, batch_size: 4, seq_len: 32}\n",
      "inline");
  cfg.logging.out_dir.clear();
  std::ostringstream quiet;
  train::Trainer on_cpu(cfg, quiet);
  cfg.device = runconfig::DeviceKind::cuda;
  train::Trainer on_gpu(cfg, quiet);
  for (int s = 0; s < 5; ++s) {
    const train::StepMetrics a = on_cpu.step(), b = on_gpu.step();
    INFO("step " << s + 1);
    CHECK(rel(a.loss, b.loss) < 1e-4);
    CHECK(a.counts == b.counts);
  }
}
