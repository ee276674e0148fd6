// Activations and SwiGLU: forward values against the closed forms, and gradients.
#include <catch2/catch.hpp>
#include <cmath>

#include "tests/support/gradcheck.h"

using namespace engine;
using engine::testing::max_abs_diff;
using engine::testing::random_tensor;

TEST_CASE("activations: forward values against the closed forms", "[activation]") {
  Tensor x = Tensor::from_vector(std::vector<double>{-30.0, -1.0, 0.0, 0.5, 40.0}, {5});
  const std::vector<double> v = x.to_vector();
  const auto s = sigmoid(x).to_vector(), sp = softplus(x).to_vector(), si = silu(x).to_vector(),
             g = gelu(x).to_vector();
  for (size_t i = 0; i < v.size(); ++i) {
    CHECK(s[i] == Approx(1.0 / (1.0 + std::exp(-v[i]))).epsilon(1e-12));
    CHECK(sp[i] == Approx(std::log1p(std::exp(v[i]))).epsilon(1e-12));
    CHECK(si[i] == Approx(v[i] / (1.0 + std::exp(-v[i]))).margin(1e-300));
    const double c = std::sqrt(2.0 / M_PI);
    CHECK(g[i] == Approx(0.5 * v[i] * (1 + std::tanh(c * (v[i] + 0.044715 * v[i] * v[i] * v[i])))).margin(1e-300));
  }
  CHECK(std::isfinite(softplus(x).to_vector()[4]));
  const auto phi = normal_cdf(x).to_vector();
  for (size_t i = 0; i < v.size(); ++i) CHECK(phi[i] == Approx(0.5 * std::erfc(-v[i] / std::sqrt(2.0))).margin(1e-15));
  CHECK(phi[2] == 0.5);
}

TEST_CASE("activations: gradients", "[activation][gradcheck]") {
  for (Activation kind :
       {Activation::gelu_tanh, Activation::silu, Activation::sigmoid, Activation::softplus, Activation::relu,
        Activation::tanh, Activation::exp, Activation::log, Activation::square, Activation::normal_cdf}) {
    for (const Shape& shape : {Shape{7}, Shape{3, 1, 4}, Shape{1}}) {
      INFO("activation " << static_cast<int>(kind) << " shape " << shape_str(shape));
      Tensor x = random_tensor(shape, 5 + shape.size());
      if (kind == Activation::log) x = add_scalar(mul(x, x), 0.2);
      if (kind == Activation::relu) x = add_scalar(x, 0.01);  // nudge off the kink at 0
      REQUIRE_GRADCHECK([kind](const std::vector<Tensor>& in) { return activation(kind, in[0]); },
                        std::vector<Tensor>({x}));
    }
  }
}

TEST_CASE("swiglu: forward and gradient", "[swiglu][gradcheck]") {
  Tensor gate = random_tensor({4, 6}, 7), up = random_tensor({4, 6}, 8);
  CHECK(engine::testing::max_abs_diff(swiglu(gate, up), mul(silu(gate), up)) < 1e-14);
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return swiglu(in[0], in[1]); },
                    std::vector<Tensor>({gate, up}));
  CHECK_THROWS_WITH(swiglu(gate, random_tensor({4, 5}, 9)), Catch::Contains("swiglu"));
}
