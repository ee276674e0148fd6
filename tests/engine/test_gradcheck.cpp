// The gradient checker itself must be able to fail: an op with a deliberately wrong backward is
// rejected, and a slightly wrong one (1% off) too.
#include <catch2/catch.hpp>

#include "tests/support/gradcheck.h"

using namespace engine;

namespace {
// y = x^3 with a backward scaled by `error` (1.0 = correct).
Tensor cube_with_backward_error(const Tensor& x, double error) {
  Tensor y = mul(x.detach(), mul(x.detach(), x.detach()));
  if (needs_grad({x})) {
    Tensor saved = x.detach();
    record(y, {x},
           [saved, error](const Tensor& dy, GradSink& g) { g.add(0, scale(mul(dy, mul(saved, saved)), 3.0 * error)); });
  }
  return y;
}
}  // namespace

TEST_CASE("gradcheck accepts a correct backward", "[gradcheck]") {
  auto r =
      engine::testing::gradcheck([](const std::vector<Tensor>& in) { return cube_with_backward_error(in[0], 1.0); },
                                 {engine::testing::random_tensor({3, 4}, 1)});
  INFO(r.report);
  CHECK(r.ok);
  CHECK(r.max_abs_error < 1e-7);
}

TEST_CASE("gradcheck rejects a wrong backward", "[gradcheck]") {
  for (double error : {0.0, 0.99, 1.01, -1.0}) {
    auto r = engine::testing::gradcheck(
        [error](const std::vector<Tensor>& in) { return cube_with_backward_error(in[0], error); },
        {engine::testing::random_tensor({3, 4}, 2)});
    INFO("scale " << error << ": " << r.report);
    CHECK_FALSE(r.ok);
  }
}

TEST_CASE("gradcheck rejects a backward that forgets an input", "[gradcheck]") {
  auto forgetful = [](const std::vector<Tensor>& in) {
    Tensor y = mul(in[0].detach(), in[1].detach());
    Tensor b = in[1].detach();
    record(y, {in[0], in[1]}, [b](const Tensor& dy, GradSink& g) { g.add(0, mul(dy, b)); });
    return y;
  };
  auto r = engine::testing::gradcheck(forgetful,
                                      {engine::testing::random_tensor({5}, 3), engine::testing::random_tensor({5}, 4)});
  INFO(r.report);
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.report, Catch::Contains("input 1"));
}
