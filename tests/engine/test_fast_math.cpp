// The CPU's vectorizable float exp/tanh (engine/core/fast_math.h) and the f32 op paths that use
// them, against double precision.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

#include "engine/core/fast_math.h"
#include "tests/support/gradcheck.h"

using namespace engine;

TEST_CASE("float exp is within 2 ulp of the true value over its whole range", "[fast_math]") {
  double worst = 0.0;
  for (float x = -86.5f; x < 88.7f; x += 0.001f) {
    const double truth = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::fabs(engine_exp(x) - truth) / truth);
  }
  CHECK(worst < 2.5e-7);  // float epsilon is 1.19e-7
}

TEST_CASE("float exp and tanh: exact edges", "[fast_math]") {
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(engine_exp(-inf) == 0.0f);
  CHECK(engine_exp(-100.0f) == 0.0f);
  CHECK(engine_exp(inf) == inf);
  CHECK(engine_exp(89.0f) == inf);
  CHECK(std::isnan(engine_exp(std::nanf(""))));
  CHECK(engine_exp(0.0f) == 1.0f);
  CHECK(engine_tanh(30.0f) == 1.0f);
  CHECK(engine_tanh(-30.0f) == -1.0f);
  for (float x = -5.0f; x < 5.0f; x += 0.01f) REQUIRE(engine_tanh(x) == Approx(std::tanh(x)).margin(3e-7));
}

TEST_CASE("f32 ops built on the fast exp match the f64 path", "[fast_math][softmax][activation][cross_entropy]") {
  Tensor x64 = engine::testing::random_tensor({37, 129}, 1, 4.0);
  Tensor x32 = x64.to(DType::f32);
  auto rel = [](const Tensor& a32, const Tensor& b64) {
    const auto a = a32.to_vector(), b = b64.to_vector();
    double worst = 0;
    for (size_t i = 0; i < a.size(); ++i)
      worst = std::max(worst, std::fabs(a[i] - b[i]) / std::max(1.0, std::fabs(b[i])));
    return worst;
  };
  CHECK(rel(softmax(x32), softmax(x64)) < 1e-6);
  CHECK(rel(log_softmax(x32), log_softmax(x64)) < 1e-5);
  CHECK(rel(logsumexp(x32), logsumexp(x64)) < 1e-6);
  for (Activation kind :
       {Activation::gelu_tanh, Activation::silu, Activation::sigmoid, Activation::tanh, Activation::exp})
    CHECK(rel(activation(kind, scale(x32, 0.25)), activation(kind, scale(x64, 0.25))) < 2e-6);
  std::vector<int32_t> t(37);
  for (int i = 0; i < 37; ++i) t[i] = (i * 31) % 129;
  Tensor targets = Tensor::from_vector(t, {37});
  CHECK(cross_entropy(x32, targets).item() == Approx(cross_entropy(x64, targets).item()).epsilon(1e-6));
}
