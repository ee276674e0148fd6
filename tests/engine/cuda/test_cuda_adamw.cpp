// AdamW's fused CUDA update (engine/optim/adamw.cu) against the CPU's: the same parameters and
// gradients on both devices, several steps at a changing learning rate, then parameters and
// both moments compared as compare.h compares op outputs.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "tests/engine/cuda/compare.h"

using namespace engine;
using namespace engine::testing;

namespace {

// The parameters after the steps, then each one's m and v, on the CPU.
Ins adamw_run(Device device, DType dt) {
  AdamWConfig cfg;
  cfg.beta1 = 0.8;
  cfg.beta2 = 0.9;
  cfg.weight_decay = 0.3;
  // A decaying matrix, a large vector (many blocks of the grid-stride kernel) that does not
  // decay, and a parameter that gets a gradient only on even steps (left alone on odd ones).
  const std::vector<Shape> shapes{{7, 33}, {100003}, {5}};
  const std::vector<bool> decays{true, false, true};
  std::vector<ParamGroupEntry> entries;
  for (size_t i = 0; i < shapes.size(); ++i) {
    Tensor p = rnd(shapes[i], 60 + i, dt).to(device);
    p.set_requires_grad(true);
    entries.push_back({"p" + std::to_string(i), p, decays[i]});
  }
  AdamW opt(entries, cfg);
  for (int step = 0; step < 4; ++step) {
    for (size_t i = 0; i < shapes.size(); ++i)
      if (i != 2 || step % 2 == 0) entries[i].param.set_grad(rnd(shapes[i], 70 + 10 * step + i, dt, 0.5).to(device));
    opt.step(0.01 * (step + 1));
    opt.zero_grad();
  }
  Ins out;
  for (const ParamGroupEntry& e : entries) out.push_back(e.param.detach().to(kCpu));
  for (size_t i = 0; i < entries.size(); ++i) {
    out.push_back(opt.m(i).to(kCpu));
    out.push_back(opt.v(i).to(kCpu));
  }
  return out;
}

}  // namespace

TEST_CASE("cuda AdamW: parameters and moments after several steps match the CPU's", "[cuda][optim][adamw]") {
  for (DType dt : kFloatTypes) {
    const Ins cpu = adamw_run(kCpu, dt), gpu = adamw_run(kGpu, dt);
    REQUIRE(cpu.size() == gpu.size());
    const double tol = dt == DType::f64 ? 1e-10 : 1e-4;
    for (size_t k = 0; k < cpu.size(); ++k)
      require_match(cpu[k], gpu[k], tol, std::string("adamw (") + dtype_name(dt) + ") state " + std::to_string(k));
  }
}
