// layernorm and rmsnorm: normalized statistics and gradients for input, scale and shift.
#include <catch2/catch.hpp>
#include <cmath>

#include "tests/support/gradcheck.h"

using namespace engine;
using engine::testing::random_tensor;

namespace {
using Ins = std::vector<Tensor>;
}

TEST_CASE("layernorm and rmsnorm: normalized statistics", "[layernorm][rmsnorm]") {
  Tensor x = add_scalar(random_tensor({4, 64}, 2, 3.0), 1000.0);  // large mean: the two-pass variance matters
  Tensor gamma = Tensor::full({64}, 1.0, DType::f64), beta = Tensor::zeros({64}, DType::f64);
  const auto y = layernorm(x.to(DType::f32), gamma.to(DType::f32), beta.to(DType::f32)).to_vector();
  for (int r = 0; r < 4; ++r) {
    double m = 0, v = 0;
    for (int j = 0; j < 64; ++j) m += y[r * 64 + j] / 64;
    for (int j = 0; j < 64; ++j) v += (y[r * 64 + j] - m) * (y[r * 64 + j] - m) / 64;
    CHECK(m == Approx(0.0).margin(1e-4));
    CHECK(v == Approx(1.0).epsilon(1e-3));
  }
  const auto z = rmsnorm(x, gamma).to_vector();
  for (int r = 0; r < 4; ++r) {
    double ms = 0;
    for (int j = 0; j < 64; ++j) ms += z[r * 64 + j] * z[r * 64 + j] / 64;
    CHECK(ms == Approx(1.0).epsilon(1e-5));
  }
  CHECK_THROWS_WITH(layernorm(x, Tensor::zeros({63}, DType::f64), beta), Catch::Contains("scale must have shape (64)"));
  CHECK_THROWS_WITH(rmsnorm(x, gamma, 0.0), Catch::Contains("eps must be positive"));
}

TEST_CASE("layernorm and rmsnorm: gradients for input, scale and shift", "[layernorm][rmsnorm][gradcheck]") {
  for (const Shape& s : {Shape{1, 5}, Shape{3, 4}, Shape{2, 3, 1}, Shape{2, 2, 6}}) {
    INFO("shape " << shape_str(s));
    const int64_t n = s.back();
    Tensor x = random_tensor(s, 3), g = random_tensor({n}, 4), b = random_tensor({n}, 5);
    REQUIRE_GRADCHECK([](const Ins& in) { return layernorm(in[0], in[1], in[2], 1e-5); }, Ins({x, g, b}));
    REQUIRE_GRADCHECK([](const Ins& in) { return rmsnorm(in[0], in[1], 1e-6); }, Ins({x, g}));
  }
}
