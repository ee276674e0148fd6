// softmax, log_softmax and logsumexp: values, large-logit stability, gradients.
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
