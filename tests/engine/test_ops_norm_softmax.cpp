// softmax, log_softmax, logsumexp, layernorm, rmsnorm: values, stability, gradients.
#include <catch2/catch.hpp>
#include <cmath>

#include "tests/support/gradcheck.h"

using namespace engine;
using engine::testing::max_abs_diff;
using engine::testing::random_tensor;

namespace {
using Ins = std::vector<Tensor>;
}

TEST_CASE("softmax family: values and large-logit stability", "[softmax]") {
  Tensor x = Tensor::from_vector(std::vector<double>{1000.0, 1001.0, 1002.0, -5.0, 0.0, 5.0}, {2, 3});
  const auto p = softmax(x).to_vector();
  const double z = 1 + std::exp(1.0) + std::exp(2.0);
  CHECK(p[0] == Approx(1 / z).epsilon(1e-12));
  CHECK(p[2] == Approx(std::exp(2.0) / z).epsilon(1e-12));
  CHECK(max_abs_diff(log_softmax(x), log(softmax(x))) < 1e-12);
  const auto lse = logsumexp(x).to_vector();
  CHECK(lse[0] == Approx(1000.0 + std::log(z)).epsilon(1e-14));
  Tensor f = Tensor::from_vector(std::vector<float>{88.0f, 89.0f, 90.0f}, {3});
  for (double v : softmax(f).to_vector()) CHECK(std::isfinite(v));
}

TEST_CASE("softmax family: gradients", "[softmax][logsumexp][gradcheck]") {
  for (const Shape& s : {Shape{1}, Shape{5}, Shape{3, 4}, Shape{2, 1, 7}}) {
    INFO("shape " << shape_str(s));
    Tensor x = random_tensor(s, 1, 2.0);
    REQUIRE_GRADCHECK([](const Ins& in) { return softmax(in[0]); }, Ins{x});
    REQUIRE_GRADCHECK([](const Ins& in) { return log_softmax(in[0]); }, Ins{x});
    REQUIRE_GRADCHECK([](const Ins& in) { return logsumexp(in[0]); }, Ins{x});
  }
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
