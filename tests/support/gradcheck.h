// Finite-difference gradient checks.
//
// The function under test maps inputs to a tensor of any shape; the checker contracts it with a
// fixed random weight (L = sum(w * f(x))) so that every output element receives a different
// upstream gradient, then compares the tape's dL/dx with central differences
// (L(x + eps) - L(x - eps)) / 2 eps for every element of every input. Inputs are f64, so with
// eps = 1e-6 the truncation and rounding errors are ~1e-9 and a wrong gradient cannot hide
// inside the tolerance.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace engine::testing {

struct GradCheckResult {
  bool ok = true;
  double max_abs_error = 0.0;
  std::string report;  // the worst element, or what failed
};

struct GradCheckOptions {
  double eps = 1e-6;
  double atol = 1e-7;
  double rtol = 1e-5;
  uint64_t seed = 1234;
};

using TensorFn = std::function<Tensor(const std::vector<Tensor>&)>;

// `inputs` are f64 CPU leaves; they are marked requires_grad here.
GradCheckResult gradcheck(const TensorFn& f, std::vector<Tensor> inputs, GradCheckOptions options = {});

// A random f64 CPU tensor, normal(0, std), reproducible from the seed.
Tensor random_tensor(const Shape& shape, uint64_t seed, double std = 1.0, DType dtype = DType::f64);

// Literal inputs: f64 values of a shape, and a 1-D i32 index vector.
Tensor doubles(const std::vector<double>& values, const Shape& shape);
Tensor ids(const std::vector<int32_t>& values);

// max |a - b| over all elements; shapes must match.
double max_abs_diff(const Tensor& a, const Tensor& b);

// Whether this CPU runs bf16 products (cpu::bf16_matmul_supported); when not, a Catch warning
// says why, and the calling test skips itself.
bool bf16_available();

}  // namespace engine::testing

// Catch2 assertion with the checker's report in the failure message.
#define REQUIRE_GRADCHECK(f, inputs, ...)                                     \
  do {                                                                        \
    auto gc_result_ = ::engine::testing::gradcheck(f, inputs, ##__VA_ARGS__); \
    INFO(gc_result_.report);                                                  \
    REQUIRE(gc_result_.ok);                                                   \
  } while (0)
