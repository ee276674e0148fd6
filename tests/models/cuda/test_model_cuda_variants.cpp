// The model's options and the trainer's run, evaluation, checkpoints and NaN stop with device
// cuda, against the CPU: what test_model_cuda.cpp does for the routers, here for RMSNorm,
// RoPE, SwiGLU, dropout, an untied head, shared experts, capacity drops, dense layers, 64
// experts, bf16 and gradient accumulation. Also holds a training step's host-device waits
// fixed (engine/core/device.h host_device_syncs). Part of cuda_tests: skipped without a device.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "tests/tools/small_run.h"
#include "tools/lib/train/trainer.h"

using namespace engine;
namespace fs = std::filesystem;

namespace {
double rel(double a, double b) { return std::fabs(a - b) / std::max(std::fabs(a), 1e-12); }

runconfig::RunConfig run_config(const std::vector<std::string>& overrides, const std::string& device,
                                const fs::path& out = {}) {
  std::vector<std::string> o = overrides;
  o.push_back("device=" + device);
  runconfig::RunConfig c = runtest::small_run(out.empty() ? fs::path("unused") : out, o);
  if (out.empty()) c.logging.out_dir.clear();
  return c;
}

fs::path fresh(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("cuda_variants_" + name);
  fs::remove_all(dir);
  return dir;
}
}  // namespace

TEST_CASE("model options on cuda follow the CPU run step by step", "[cuda][model][trainer]") {
  const std::vector<std::vector<std::string>> variants = {
      {"model.norm=rmsnorm"},
      {"model.position=rope"},
      {"model.activation=swiglu"},
      {"model.dropout=0.1"},
      {"model.tie_embeddings=false"},
      {"moe.num_shared_experts=1"},
      {"moe.capacity_factor=0.5"},  // tight: tokens are dropped
      {"moe.layers=every_n", "moe.every_n=2"},
      {"moe.first_dense=1"},
      {"moe.num_experts=64", "moe.top_k=2"},
      {"training.grad_accum=2"},
      {"model.norm=rmsnorm", "model.position=rope", "model.activation=swiglu", "model.tie_embeddings=false"},
  };
  for (const auto& v : variants) {
    std::string name;
    for (const auto& s : v) name += s + " ";
    INFO("variant " << name);
    std::ostringstream quiet;
    train::Trainer on_cpu(run_config(v, "cpu"), quiet), on_gpu(run_config(v, "cuda"), quiet);
    for (int s = 0; s < 3; ++s) {
      const train::StepMetrics a = on_cpu.step(), b = on_gpu.step();
      INFO("step " << s + 1);
      CHECK(rel(a.loss, b.loss) < 1e-4);
      CHECK(a.counts == b.counts);
    }
  }
}

TEST_CASE("bf16 on cuda follows the CPU bf16 run", "[cuda][model][bf16]") {
  std::ostringstream quiet;
  train::Trainer on_cpu(run_config({"precision=bf16"}, "cpu"), quiet),
      on_gpu(run_config({"precision=bf16"}, "cuda"), quiet);
  for (int s = 0; s < 3; ++s) {
    const train::StepMetrics a = on_cpu.step(), b = on_gpu.step();
    INFO("step " << s + 1);
    CHECK(rel(a.loss, b.loss) < 1e-2);  // bf16 roundings differ between the backends' sum orders
  }
}

TEST_CASE("trainer on cuda: run evaluate save and resume match the CPU", "[cuda][trainer]") {
  const std::vector<std::string> o = {"training.steps=4", "checkpointing.every=2", "training.eval_every=0"};
  std::ostringstream quiet;
  train::Trainer cpu(run_config(o, "cpu", fresh("cpu")), quiet), gpu(run_config(o, "cuda", fresh("gpu")), quiet);
  CHECK(cpu.run() == train::RunEnd::finished);
  CHECK(gpu.run() == train::RunEnd::finished);
  CHECK(rel(cpu.evaluate(), gpu.evaluate()) < 1e-4);
  // Resumed from its step-2 checkpoint, the CUDA run repeats steps 3 and 4.
  train::Trainer resumed(run_config(o, "cuda", fresh("gpu_resumed")), quiet);
  resumed.resume((fs::temp_directory_path() / "cuda_variants_gpu" / "checkpoints" / "step_00000002.h5").string());
  CHECK(resumed.steps_done() == 2);
  CHECK(resumed.run() == train::RunEnd::finished);
  CHECK(rel(resumed.evaluate(), gpu.evaluate()) < 1e-5);
}

TEST_CASE("trainer on cuda: a NaN stops training with a diagnostic checkpoint", "[cuda][trainer][nan]") {
  const fs::path dir = fresh("nan");
  std::ostringstream progress;
  train::Trainer t(run_config({"training.steps=5"}, "cuda", dir), progress);
  t.step();
  const moe::NamedParam& p = t.model().params().all()[5];
  {
    NoGradScope no_grad;
    Tensor target = p.tensor;
    copy_into(Tensor::full(p.tensor.shape(), std::nan(""), p.tensor.dtype(), p.tensor.device()), target);
  }
  CHECK_THROWS_WITH(t.run(), Catch::Contains("training stopped at step 2") && Catch::Contains("parameter " + p.name) &&
                                 Catch::Contains("diagnostic checkpoint"));
}

TEST_CASE("a training step on cuda waits for the device a fixed number of times", "[cuda][trainer][sync]") {
  std::ostringstream quiet;
  train::Trainer t(run_config({"training.steps=6", "logging.every=100", "training.eval_every=0"}, "cuda"), quiet);
  t.step();  // warm-up: caches (RoPE tables, allocator blocks) fill here
  std::vector<uint64_t> per_step;
  for (int s = 0; s < 3; ++s) {
    const uint64_t before = host_device_syncs();
    t.step();
    per_step.push_back(host_device_syncs() - before);
  }
  INFO("host-device waits per step: " << per_step[0] << ", " << per_step[1] << ", " << per_step[2]);
  CHECK(per_step[0] == per_step[1]);
  CHECK(per_step[1] == per_step[2]);
  // Routing reads its choices back per MoE layer, the loss is read, the balance terms and the
  // gradient norm's sums are one buffer each (uploads do not wait). A loose ceiling for this
  // 2-layer model until a GPU has measured the count (the INFO above prints it on failure);
  // meanwhile the equality above is what holds it fixed from step to step.
  CHECK(per_step[0] <= 100);
}
