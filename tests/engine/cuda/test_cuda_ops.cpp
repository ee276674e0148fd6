// CPU-vs-CUDA comparisons for every op in engine/engine.h. Each case builds its inputs on the
// CPU, runs the same function on both devices (forward, then backward of
// sum_k sum(out_k * w_k) with fixed random weights), and compares outputs and input gradients:
// f32 within 1e-4 of the largest magnitude, f64 within 1e-10. Integer outputs must match exactly.
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "engine/engine.h"

using namespace engine;

namespace {

const Device kCpu = Device::cpu();
const Device kGpu = Device::cuda(0);

using Ins = std::vector<Tensor>;  // a case's inputs, and its outputs
using Fn = std::function<Ins(const Ins&)>;

double default_tol(DType t) { return t == DType::f64 ? 1e-10 : 1e-4; }

Tensor rnd(const Shape& shape, uint64_t seed, DType dt, double std = 1.0) {
  Generator gen(seed);
  return randn(shape, gen, 0.0, std, dt);
}

Tensor uniform(const Shape& shape, uint64_t seed, DType dt, double low, double high) {
  Generator gen(seed);
  return rand_uniform(shape, gen, low, high, dt);
}

Tensor ints(const std::vector<int32_t>& v) { return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}); }

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

// The shared check: f on both devices from the same inputs, outputs and gradients compared.
// By default every floating input is differentiable.
void compare(const std::string& name, const Fn& f, const std::vector<Tensor>& inputs, double tol = 0.0,
             std::vector<bool> differentiable = {}) {
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

const DType kFloatTypes[] = {DType::f32, DType::f64};

}  // namespace

// ---- matmul -------------------------------------------------------------------------------------

TEST_CASE("cuda matmul: 2-D, every transpose combination", "[cuda][matmul]") {
  for (DType dt : kFloatTypes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        const int64_t m = 7, k = 13, n = 5;
        Tensor a = rnd(ta ? Shape{k, m} : Shape{m, k}, 1, dt), b = rnd(tb ? Shape{n, k} : Shape{k, n}, 2, dt);
        compare("matmul ta=" + std::to_string(ta) + " tb=" + std::to_string(tb),
                [=](const Ins& x) { return Ins{matmul(x[0], x[1], ta, tb)}; }, {a, b});
      }
}

TEST_CASE("cuda matmul: batched 3-D, every transpose combination", "[cuda][matmul]") {
  for (DType dt : kFloatTypes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        const int64_t batch = 3, m = 6, k = 9, n = 4;
        Tensor a = rnd(ta ? Shape{batch, k, m} : Shape{batch, m, k}, 3, dt);
        Tensor b = rnd(tb ? Shape{batch, n, k} : Shape{batch, k, n}, 4, dt);
        compare("bmm ta=" + std::to_string(ta) + " tb=" + std::to_string(tb),
                [=](const Ins& x) { return Ins{matmul(x[0], x[1], ta, tb)}; }, {a, b});
      }
}

TEST_CASE("cuda matmul: N-D @ 2-D, k = 0 and empty shapes", "[cuda][matmul]") {
  for (DType dt : kFloatTypes) {
    compare("matmul nd", [](const Ins& x) { return Ins{matmul(x[0], x[1], false, true)}; },
            {rnd({2, 3, 8}, 5, dt), rnd({6, 8}, 6, dt)});
    Tensor zero_k = matmul(Tensor::empty({4, 0}, dt, kGpu), Tensor::empty({0, 3}, dt, kGpu));
    CHECK(zero_k.to_vector() == std::vector<double>(12, 0.0));
    Tensor no_rows = matmul(Tensor::empty({0, 5}, dt, kGpu), rnd({5, 3}, 7, dt).to(kGpu));
    CHECK(no_rows.shape() == Shape{0, 3});
  }
}

TEST_CASE("cuda linear: with and without bias", "[cuda][matmul][linear]") {
  for (DType dt : kFloatTypes) {
    Tensor x = rnd({2, 5, 16}, 8, dt), w = rnd({12, 16}, 9, dt), bias = rnd({12}, 10, dt);
    compare("linear+bias", [](const Ins& in) { return Ins{linear(in[0], in[1], in[2])}; }, {x, w, bias});
    compare("linear", [](const Ins& in) { return Ins{linear(in[0], in[1])}; }, {x, w});
  }
}

TEST_CASE("cuda matmul and linear in bf16 (CUBLAS_COMPUTE_32F_FAST_16BF) match the CPU's bf16",
          "[cuda][matmul][bf16]") {
  std::string why;
  if (!cpu::bf16_matmul_supported(&why)) {
    WARN("skipped: the CPU side has no bf16 matmul: " << why);
    return;
  }
  // Both round the operands to bf16 and sum in f32; forward and backward run in bf16.
  auto in_bf16 = [](const Fn& f) {
    return [f](const Ins& x) {
      MatmulPrecisionScope scope(MatmulPrecision::bf16);
      return f(x);
    };
  };
  compare("bf16 matmul", in_bf16([](const Ins& x) { return Ins{matmul(x[0], x[1], false, true)}; }),
          {rnd({37, 64}, 11, DType::f32), rnd({24, 64}, 12, DType::f32)}, 2e-3);
  compare("bf16 linear", in_bf16([](const Ins& x) { return Ins{linear(x[0], x[1], x[2])}; }),
          {rnd({3, 11, 32}, 13, DType::f32), rnd({20, 32}, 14, DType::f32), rnd({20}, 15, DType::f32)}, 2e-3);
}

// ---- grouped_linear (the MoE experts' grouped cuBLAS products) ------------------------------

TEST_CASE("cuda grouped_linear: empty groups, with and without bias, f32 f64 and bf16", "[cuda][grouped_linear]") {
  // Groups 0, 2 and 5 own no rows: no product, no gradient for their weights on either device.
  const std::vector<int64_t> offsets{0, 0, 3, 3, 10, 17, 17};
  auto with_bias = [offsets](const Ins& x) {
    return Ins{grouped_linear(x[0], offsets, Ins(x.begin() + 1, x.begin() + 7), Ins(x.begin() + 7, x.end()))};
  };
  auto without_bias = [offsets](const Ins& x) {
    return Ins{grouped_linear(x[0], offsets, Ins(x.begin() + 1, x.end()))};
  };
  auto inputs = [](DType dt) {
    Ins in{rnd({17, 12}, 1, dt)};
    for (int g = 0; g < 6; ++g) in.push_back(rnd({9, 12}, 10 + g, dt));
    for (int g = 0; g < 6; ++g) in.push_back(rnd({9}, 20 + g, dt));
    return in;
  };
  for (DType dt : kFloatTypes) {
    const Ins in = inputs(dt);
    const cuda::GroupedGemmCounts before = cuda::grouped_gemm_counts();
    compare("grouped_linear+bias", with_bias, in);
    compare("grouped_linear", without_bias, Ins(in.begin(), in.begin() + 7));
    // Forward, dX and dW of both cases went through the grouped cuBLAS call, not one by one.
    CHECK(cuda::grouped_gemm_counts().grouped_calls - before.grouped_calls >= 6);
    CHECK(cuda::grouped_gemm_counts().one_by_one == before.one_by_one);
  }
  if (cpu::bf16_matmul_supported()) {
    const Ins in = inputs(DType::f32);
    compare(
        "bf16 grouped_linear",
        [with_bias](const Ins& x) {
          MatmulPrecisionScope scope(MatmulPrecision::bf16);
          return with_bias(x);
        },
        in, 2e-3);
  }
}

// ---- elementwise --------------------------------------------------------------------------------

TEST_CASE("cuda binary: add/sub/mul/div with every broadcast form", "[cuda][binary]") {
  const std::vector<std::pair<Shape, Shape>> forms = {{{4, 6}, {4, 6}}, {{3, 4, 6}, {6}}, {{3, 4, 6}, {4, 6}},
                                                      {{6}, {3, 4, 6}}, {{4, 6}, {1}},    {{1}, {4, 6}}};
  for (DType dt : kFloatTypes)
    for (const auto& [sa, sb] : forms)
      for (BinaryOp op : {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div}) {
        Tensor a = rnd(sa, 11, dt);
        Tensor b = op == BinaryOp::div ? uniform(sb, 12, dt, 0.5, 2.0) : rnd(sb, 12, dt);
        compare("binary " + std::to_string(static_cast<int>(op)) + " " + shape_str(sa) + " " + shape_str(sb),
                [op](const Ins& x) { return Ins{binary(op, x[0], x[1])}; }, {a, b});
      }
}

TEST_CASE("cuda affine, scale, neg, add_scalar", "[cuda][affine]") {
  for (DType dt : kFloatTypes)
    compare("affine",
            [](const Ins& x) {
              return Ins{affine(x[0], 1.5, -0.25), scale(x[0], -3.0), neg(x[0]), add_scalar(x[0], 2.0)};
            },
            {rnd({5, 7}, 13, dt)});
}

TEST_CASE("cuda activations: every kind and swiglu", "[cuda][activation]") {
  const Activation kinds[] = {Activation::gelu_tanh, Activation::silu,      Activation::sigmoid, Activation::softplus,
                              Activation::relu,      Activation::tanh,      Activation::exp,     Activation::log,
                              Activation::square,    Activation::normal_cdf};
  for (DType dt : kFloatTypes) {
    for (Activation kind : kinds) {
      // log needs positive inputs; the others get both signs, including |x| large enough to
      // exercise the overflow-safe branches of sigmoid and softplus.
      Tensor x = kind == Activation::log ? uniform({4, 33}, 14, dt, 0.1, 5.0) : rnd({4, 33}, 14, dt, 4.0);
      compare("activation " + std::to_string(static_cast<int>(kind)),
              [kind](const Ins& in) { return Ins{activation(kind, in[0])}; }, {x});
    }
    compare("swiglu", [](const Ins& in) { return Ins{swiglu(in[0], in[1])}; },
            {rnd({3, 40}, 15, dt, 2.0), rnd({3, 40}, 16, dt)});
  }
}

// ---- reductions and shapes ----------------------------------------------------------------------

TEST_CASE("cuda sum and mean over each axis and all elements", "[cuda][reduce]") {
  for (DType dt : kFloatTypes) {
    Tensor x = rnd({3, 5, 7}, 17, dt);
    for (int axis = -1; axis < 3; ++axis)
      for (bool keep : {false, true})
        compare("sum/mean axis " + std::to_string(axis),
                [=](const Ins& in) {
                  return Ins{sum(in[0], axis, keep), mean(in[0], axis, keep)};
                },
                {x});
    compare("sum_all/mean_all", [](const Ins& in) { return Ins{sum_all(in[0]), mean_all(in[0])}; }, {x});
    // Long rows (the block-per-row path) and many rows over a short inner axis (column sums).
    compare("sum long rows", [](const Ins& in) { return Ins{sum(in[0], 1)}; }, {rnd({4, 5000}, 18, dt)});
    compare("sum long columns", [](const Ins& in) { return Ins{sum(in[0], 0)}; }, {rnd({3000, 70}, 19, dt)});
  }
}

TEST_CASE("cuda sum_squares: several chunks, f32 and f64, reproducible", "[cuda][reduce][sum_squares]") {
  for (DType dt : kFloatTypes) {
    compare(
        "sum_squares", [](const Ins& in) { return Ins{sum_squares(in[0])}; }, {rnd({100003}, 21, dt)}, 1e-12);
    compare(
        "sum_squares small", [](const Ins& in) { return Ins{sum_squares(in[0])}; }, {rnd({3, 5}, 22, dt)}, 1e-12);
  }
  Tensor x = rnd({300000}, 23, DType::f32).to(kGpu);
  CHECK(sum_squares(x).item() == sum_squares(x).item());
  CHECK(sum_squares(Tensor::empty({0}, DType::f32, kGpu)).item() == 0.0);
}

TEST_CASE("cuda reduce is bit-reproducible", "[cuda][reduce]") {
  Tensor x = rnd({64, 4096}, 20, DType::f32).to(kGpu);
  const std::vector<float> a = sum(x, 1).to_float_vector(), b = sum(x, 1).to_float_vector();
  const std::vector<float> c = sum(x, 0).to_float_vector(), d = sum(x, 0).to_float_vector();
  CHECK(a == b);
  CHECK(c == d);
}

TEST_CASE("cuda reshape, permute, transpose, slice, concat", "[cuda][shape]") {
  for (DType dt : kFloatTypes) {
    Tensor x = rnd({2, 3, 4, 5}, 21, dt);
    compare("reshape", [](const Ins& in) { return Ins{reshape(in[0], {6, -1})}; }, {x});
    compare("permute", [](const Ins& in) { return Ins{permute(in[0], {2, 0, 3, 1}).contiguous()}; }, {x});
    compare("transpose+reshape", [](const Ins& in) { return Ins{reshape(transpose(in[0], 1, 3), {-1})}; }, {x});
    compare("slice", [](const Ins& in) { return Ins{slice(in[0], 2, 1, 3).contiguous(), slice(in[0], 0, 1, 2)}; }, {x});
    compare("concat",
            [](const Ins& in) {
              return Ins{concat({in[0], in[1]}, 1), concat({in[1], in[0]}, 0)};
            },
            {rnd({4, 3}, 22, dt), rnd({4, 3}, 23, dt)});
    compare("concat of views",
            [](const Ins& in) {
              return Ins{concat({transpose(in[0], 0, 1), slice(in[1], 0, 2, 7)}, 0)};
            },
            {rnd({6, 4}, 24, dt), rnd({9, 6}, 25, dt)});
  }
}

TEST_CASE("cuda strided copy of a 6-D permutation, cast and fill", "[cuda][copy]") {
  Tensor x = rnd({2, 3, 2, 4, 3, 5}, 26, DType::f64);
  Tensor perm_cpu = permute(x, {5, 3, 1, 0, 4, 2}).contiguous();
  Tensor perm_gpu = permute(x.to(kGpu), {5, 3, 1, 0, 4, 2}).contiguous().to(kCpu);
  CHECK(perm_cpu.to_vector() == perm_gpu.to_vector());
  for (DType from : {DType::f32, DType::f64, DType::i32})
    for (DType to : {DType::f32, DType::f64, DType::i32}) {
      Tensor src = rnd({37}, 27, DType::f64, 50.0).to(from);
      INFO(dtype_name(from) << " -> " << dtype_name(to));
      CHECK(src.to(to).to_vector() == src.to(kGpu).to(to).to(kCpu).to_vector());
    }
  for (DType dt : {DType::f32, DType::f64, DType::i32})
    CHECK(Tensor::full({3, 5}, -7.0, dt, kGpu).to_vector() == std::vector<double>(15, -7.0));
}

TEST_CASE("cuda to_device round trips and gradients", "[cuda][copy][to_device]") {
  Tensor f = rnd({3, 4}, 28, DType::f32), d = rnd({3, 4}, 29, DType::f64);
  Tensor i = Tensor::from_vector(std::vector<int32_t>{1, -2, 3, 2147483647, -2147483647 - 1, 0}, {2, 3});
  CHECK(f.to(kGpu).to(kCpu).to_float_vector() == f.to_float_vector());
  CHECK(d.to(kGpu).to(kCpu).to_vector() == d.to_vector());
  CHECK(i.to(kGpu).to(kCpu).to_int_vector() == i.to_int_vector());
  CHECK(d.to(kGpu).clone().to(kCpu).to_vector() == d.to_vector());  // device to device
  CHECK(transpose(d, 0, 1).to(kGpu).to(kCpu).to_vector() == transpose(d, 0, 1).contiguous().to_vector());
  CHECK(Tensor::empty({0, 3}, DType::f32, kGpu).to(kCpu).numel() == 0);
  // The gradient of a transfer is moved back.
  compare("to_device", [](const Ins& in) { return Ins{mul(in[0].to(kGpu), in[0].to(kGpu)).to(kCpu)}; }, {d});
}

// ---- normalization, softmax, losses ------------------------------------------------------------

TEST_CASE("cuda softmax, log_softmax, logsumexp", "[cuda][softmax]") {
  for (DType dt : kFloatTypes)
    for (const Shape& shape : {Shape{5, 7}, Shape{2, 3, 1000}, Shape{4, 1}}) {
      Tensor x = rnd(shape, 30, dt, 3.0);
      compare("softmax " + shape_str(shape), [](const Ins& in) { return Ins{softmax(in[0])}; }, {x});
      compare("log_softmax " + shape_str(shape), [](const Ins& in) { return Ins{log_softmax(in[0])}; }, {x});
      compare("logsumexp " + shape_str(shape), [](const Ins& in) { return Ins{logsumexp(in[0])}; }, {x});
    }
  // Large logits must not overflow; an all -inf row has logsumexp -inf on both devices.
  Tensor big = Tensor::from_vector(std::vector<float>{1000.f, 999.f, -1000.f, -INFINITY, -INFINITY, -INFINITY}, {2, 3});
  require_match(softmax(big), softmax(big.to(kGpu)).to(kCpu), 1e-6, "softmax of large logits");
  require_match(logsumexp(big), logsumexp(big.to(kGpu)).to(kCpu), 1e-6, "logsumexp with an all -inf row");
}

TEST_CASE("cuda layernorm and rmsnorm", "[cuda][norm]") {
  for (DType dt : kFloatTypes)
    for (int64_t n : {8, 300}) {
      // An offset mean tests the two-pass variance.
      Tensor x = add_scalar(rnd({2, 3, n}, 31, dt, 2.0), 5.0), gamma = rnd({n}, 32, dt), beta = rnd({n}, 33, dt);
      compare("layernorm", [](const Ins& in) { return Ins{layernorm(in[0], in[1], in[2])}; }, {x, gamma, beta});
      compare("layernorm no shift", [](const Ins& in) { return Ins{layernorm(in[0], in[1], Tensor())}; }, {x, gamma});
      compare("rmsnorm", [](const Ins& in) { return Ins{rmsnorm(in[0], in[1])}; }, {x, gamma});
    }
}

TEST_CASE("cuda cross_entropy with ignore_index", "[cuda][cross_entropy]") {
  for (DType dt : kFloatTypes) {
    Tensor logits = rnd({2, 4, 11}, 34, dt, 2.0);
    Tensor targets = Tensor::from_vector(std::vector<int32_t>{3, -100, 10, 0, 5, -100, 7, 1}, {2, 4});
    compare("cross_entropy", [](const Ins& in) { return Ins{cross_entropy(in[0], in[1])}; }, {logits, targets});
    Tensor sevens = Tensor::from_vector(std::vector<int32_t>{3, 7, 10, 0, 7, 7, 2, 1}, {2, 4});
    compare("cross_entropy ignore 7", [](const Ins& in) { return Ins{cross_entropy(in[0], in[1], 7)}; },
            {logits, sevens});
    Tensor ignored = Tensor::full({2, 4}, -100, DType::i32);
    compare("cross_entropy all ignored", [](const Ins& in) { return Ins{cross_entropy(in[0], in[1])}; },
            {logits, ignored});
  }
  // A bad target throws on both devices with the same message (the first bad row).
  Tensor logits = rnd({4, 5}, 35, DType::f32);
  Tensor bad = ints({1, 2, 9, -3});
  std::string cpu_msg, gpu_msg;
  try {
    cross_entropy(logits, bad);
  } catch (const std::invalid_argument& e) {
    cpu_msg = e.what();
  }
  try {
    cross_entropy(logits.to(kGpu), bad.to(kGpu));
  } catch (const std::invalid_argument& e) {
    gpu_msg = e.what();
  }
  CHECK(!cpu_msg.empty());
  CHECK(cpu_msg == gpu_msg);
}

// ---- attention ----------------------------------------------------------------------------------

TEST_CASE("cuda causal_attention", "[cuda][attention]") {
  for (DType dt : kFloatTypes) {
    Tensor q = rnd({2, 3, 17, 8}, 36, dt), k = rnd({2, 3, 17, 8}, 37, dt), v = rnd({2, 3, 17, 8}, 38, dt);
    compare("attention", [](const Ins& in) { return Ins{causal_attention(in[0], in[1], in[2])}; }, {q, k, v});
    compare("attention scale 0.7, views",
            [](const Ins& in) {
              return Ins{causal_attention(transpose(in[0], 1, 2), transpose(in[1], 1, 2), transpose(in[2], 1, 2), 0.7)};
            },
            {rnd({1, 9, 2, 4}, 39, dt), rnd({1, 9, 2, 4}, 40, dt), rnd({1, 9, 2, 4}, 41, dt)});
    // Backward recomputing P from the log-sum-exp instead of reading the kept probabilities
    // (the limit restored even when a REQUIRE inside compare fails).
    struct Restore {
      int64_t previous;
      ~Restore() { set_attention_saved_probs_limit(previous); }
    } restore{set_attention_saved_probs_limit(0)};
    compare("attention, probabilities recomputed",
            [](const Ins& in) { return Ins{causal_attention(in[0], in[1], in[2])}; }, {q, k, v});
  }
}

// ---- routing ------------------------------------------------------------------------------------

TEST_CASE("cuda topk: values, indices with ties and NaN, gradients", "[cuda][topk]") {
  for (DType dt : kFloatTypes) {
    // Rounded values make ties common: the lower index must win on both devices.
    Tensor x = rnd({6, 16}, 42, dt, 2.0);
    std::vector<double> rounded = x.to_vector();
    for (double& r : rounded) r = std::round(r);
    rounded[5] = NAN;
    Tensor tied = Tensor::from_vector(rounded, {6, 16}).to(dt);
    for (int64_t k : {1, 2, 4, 16})
      compare("topk k=" + std::to_string(k),
              [k](const Ins& in) {
                TopK t = topk(in[0], k);
                return Ins{t.values, t.indices};
              },
              {k == 16 ? x : tied});
    compare("topk nan row", [](const Ins& in) { return Ins{topk(in[0], 3).indices}; }, {tied});
  }
}

TEST_CASE("cuda gather_rows, scatter_add_rows, embedding", "[cuda][gather_scatter]") {
  for (DType dt : kFloatTypes) {
    Tensor x = rnd({7, 5}, 43, dt), index = ints({6, 0, 3, 3, 1, 6, 6, 2});
    compare("gather_rows", [](const Ins& in) { return Ins{gather_rows(in[0], in[1])}; }, {x, index});
    Tensor src = rnd({8, 5}, 44, dt), weight = rnd({8}, 45, dt);
    // Repeated indices collide: the atomics' order may differ from the CPU's, within rounding.
    compare("scatter_add_rows", [](const Ins& in) { return Ins{scatter_add_rows(in[0], in[1], 9)}; }, {src, index});
    compare("scatter_add_rows weighted", [](const Ins& in) { return Ins{scatter_add_rows(in[0], in[1], 9, in[2])}; },
            {src, index, weight});
    Tensor table = rnd({10, 6}, 46, dt);
    Tensor ids = Tensor::from_vector(std::vector<int32_t>{9, 0, 4, 4, 2, 7}, {2, 3});
    compare("embedding", [](const Ins& in) { return Ins{embedding(in[0], in[1])}; }, {table, ids});
  }
  Tensor int_rows = Tensor::from_vector(std::vector<int32_t>{1, 2, 3, 4, 5, 6}, {3, 2});
  CHECK(gather_rows(int_rows.to(kGpu), ints({2, 0}).to(kGpu)).to(kCpu).to_int_vector() ==
        std::vector<int32_t>{5, 6, 1, 2});
}

// ---- randomness ---------------------------------------------------------------------------------

TEST_CASE("cuda dropout drops the same elements as the CPU", "[cuda][dropout]") {
  for (DType dt : kFloatTypes)
    for (double p : {0.1, 0.5, 0.9})
      compare("dropout p=" + std::to_string(p),
              [p](const Ins& in) {
                Generator gen(77);
                Tensor first = dropout(in[0], p, gen);
                return Ins{first, dropout(in[0], p, gen)};  // the second draw uses a later offset
              },
              {rnd({5, 203}, 47, dt)});
}

TEST_CASE("cuda randn and rand_uniform give the CPU's numbers", "[cuda][random]") {
  for (DType dt : kFloatTypes) {
    Generator cpu_gen(123), gpu_gen(123);
    for (int draw = 0; draw < 3; ++draw) {
      Tensor a = randn({1001}, cpu_gen, 0.5, 2.0, dt), b = randn({1001}, gpu_gen, 0.5, 2.0, dt, kGpu);
      require_match(a, b.to(kCpu), dt == DType::f64 ? 1e-14 : 1e-6, "randn");
      Tensor c = rand_uniform({999}, cpu_gen, -1.0, 3.0, dt), e = rand_uniform({999}, gpu_gen, -1.0, 3.0, dt, kGpu);
      require_match(c, e.to(kCpu), dt == DType::f64 ? 1e-14 : 1e-7, "rand_uniform");
    }
    CHECK(cpu_gen.offset() == gpu_gen.offset());
  }
}

// ---- allocator ----------------------------------------------------------------------------------

TEST_CASE("cuda caching allocator: a repeated step makes no new cudaMalloc", "[cuda][allocator]") {
  Generator gen(5);
  Tensor w = randn({64, 32}, gen, 0.0, 0.1, DType::f32, kGpu).set_requires_grad(true);
  Tensor x = randn({16, 8, 32}, gen, 0.0, 1.0, DType::f32, kGpu);
  Tensor targets = Tensor::full({16, 8}, 3, DType::i32, kGpu);
  auto step = [&] {
    Tensor h = rmsnorm(gelu(linear(x, w)), Tensor::full({64}, 1.0, DType::f32, kGpu));
    Tensor loss = cross_entropy(h, targets);
    backward(loss);
    w.zero_grad();
  };
  step();  // warm-up: fills the cache
  const size_t before = memory_stats(kGpu).raw_allocations;
  for (int i = 0; i < 5; ++i) step();
  const MemoryStats after = memory_stats(kGpu);
  CHECK(after.raw_allocations == before);
  CHECK(after.reuses > 0);
}
