// The comparison harness of compare.h.
#include "tests/engine/cuda/compare.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>

namespace engine::testing {

namespace {

double default_tol(DType t) { return t == DType::f64 ? 1e-10 : 1e-4; }

// max |a - b| / max |a| (absolute when a is all zero); NaN counts as infinitely wrong unless
// both sides are NaN at the same place.
double relative_error(const Tensor& expected, const Tensor& actual) {
  const std::vector<double> a = expected.to_vector(), b = actual.to_vector();
  double scale = 0.0, err = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;
    if (std::isnan(a[i]) != std::isnan(b[i])) return INFINITY;
    if (std::isinf(a[i]) || std::isinf(b[i])) {
      if (a[i] != b[i]) return INFINITY;
      continue;
    }
    scale = std::max(scale, std::fabs(a[i]));
    err = std::max(err, std::fabs(a[i] - b[i]));
  }
  return scale > 0 ? err / scale : err;
}

struct Run {
  std::vector<Tensor> outputs;  // on the CPU
  std::vector<Tensor> grads;    // on the CPU; undefined where an input got none
};

// Runs f on `device` with copies of the host inputs as fresh leaves (floating ones require a
// gradient when `differentiable` says so), then backward through weighted sums of the
// floating outputs.
Run run_on(Device device, const Fn& f, const std::vector<Tensor>& host_inputs,
           const std::vector<bool>& differentiable) {
  clear_tape();
  std::vector<Tensor> inputs;
  for (size_t i = 0; i < host_inputs.size(); ++i) {
    Tensor t = host_inputs[i].defined() ? host_inputs[i].detach().to(device).detach() : Tensor();
    if (t.defined() && differentiable[i]) t.set_requires_grad(true);
    inputs.push_back(t);
  }
  std::vector<Tensor> outputs = f(inputs);
  Tensor loss;
  for (size_t k = 0; k < outputs.size(); ++k) {
    const Tensor& out = outputs[k];
    if (!is_floating(out.dtype()) || !out.requires_grad()) continue;
    Generator gen(1000 + k);
    Tensor w = randn(out.shape(), gen, 0.0, 1.0, out.dtype()).to(device);
    Tensor term = sum_all(mul(out, w));
    loss = loss.defined() ? add(loss, term) : term;
  }
  if (loss.defined()) backward(loss);
  Run run;
  for (const Tensor& out : outputs) run.outputs.push_back(out.detach().to(kCpu));
  for (const Tensor& in : inputs)
    run.grads.push_back(in.defined() && in.grad().defined() ? in.grad().to(kCpu) : Tensor());
  return run;
}

}  // namespace

Tensor rnd(const Shape& shape, uint64_t seed, DType dt, double std) {
  Generator gen(seed);
  return randn(shape, gen, 0.0, std, dt);
}

Tensor uniform(const Shape& shape, uint64_t seed, DType dt, double low, double high) {
  Generator gen(seed);
  return rand_uniform(shape, gen, low, high, dt);
}

Tensor ints(const std::vector<int32_t>& v) { return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}); }

void require_match(const Tensor& cpu, const Tensor& gpu, double tol, const std::string& what) {
  INFO(what << ": cpu " << cpu.str() << ", cuda " << gpu.str());
  REQUIRE(cpu.defined() == gpu.defined());
  if (!cpu.defined()) return;
  REQUIRE(gpu.device().is_cpu());
  REQUIRE(cpu.shape() == gpu.shape());
  REQUIRE(cpu.dtype() == gpu.dtype());
  if (cpu.dtype() == DType::i32) {
    CHECK(cpu.to_int_vector() == gpu.to_int_vector());
    return;
  }
  const double err = relative_error(cpu, gpu);
  INFO("relative error " << err << ", tolerance " << tol);
  CHECK(err <= tol);
}

void compare(const std::string& name, const Fn& f, const std::vector<Tensor>& inputs, double tol,
             std::vector<bool> differentiable) {
  if (differentiable.empty())
    for (const Tensor& t : inputs) differentiable.push_back(t.defined() && is_floating(t.dtype()));
  DType dt = DType::f32;
  for (const Tensor& t : inputs)
    if (t.defined() && is_floating(t.dtype())) dt = t.dtype();
  if (tol == 0.0) tol = default_tol(dt);
  const Run cpu = run_on(kCpu, f, inputs, differentiable);
  const Run gpu = run_on(kGpu, f, inputs, differentiable);
  REQUIRE(cpu.outputs.size() == gpu.outputs.size());
  for (size_t k = 0; k < cpu.outputs.size(); ++k)
    require_match(cpu.outputs[k], gpu.outputs[k], tol, name + " (" + dtype_name(dt) + ") output " + std::to_string(k));
  for (size_t i = 0; i < inputs.size(); ++i)
    require_match(cpu.grads[i], gpu.grads[i], tol,
                  name + " (" + dtype_name(dt) + ") grad of input " + std::to_string(i));
}

}  // namespace engine::testing
