// dropout: keep rate, scaling, identity when off, reproducible mask, and the mask regenerated in
// backward.
#include <catch2/catch.hpp>
#include <cmath>

#include "tests/support/gradcheck.h"

using namespace engine;
using engine::testing::random_tensor;

TEST_CASE("dropout: keep rate, scaling, identity when off, reproducible mask", "[dropout]") {
  Tensor x = Tensor::full({10000}, 1.0, DType::f64);
  Generator g(5);
  const auto y = dropout(x, 0.25, g).to_vector();
  int kept = 0;
  for (double v : y) {
    CHECK((v == 0.0 || v == Approx(1.0 / 0.75)));
    kept += v != 0.0;
  }
  CHECK(kept / 10000.0 == Approx(0.75).margin(0.02));
  Generator g_same(5);
  CHECK(dropout(x, 0.25, g_same).to_vector() == y);
  Generator g_off(5);
  CHECK(dropout(x, 0.25, g_off, false).same_storage(x));
  CHECK_THROWS_WITH(dropout(x, 1.0, g), Catch::Contains("probability must be in [0, 1)"));
}

TEST_CASE("dropout: gradient uses the forward's mask", "[dropout][gradcheck]") {
  // Each evaluation must see the same mask, so the generator is re-seeded inside f.
  auto f = [](const std::vector<Tensor>& in) {
    Generator g(11);
    return dropout(in[0], 0.4, g);
  };
  REQUIRE_GRADCHECK(f, std::vector<Tensor>({engine::testing::random_tensor({3, 7}, 1)}));
}
