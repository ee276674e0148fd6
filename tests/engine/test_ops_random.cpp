// Random fills and dropout: reproducible from (seed, offset), the right statistics, the mask
// regenerated in backward.
#include <catch2/catch.hpp>
#include <cmath>

#include "tests/support/gradcheck.h"

using namespace engine;

TEST_CASE("randn and rand_uniform: reproducible streams with the right moments", "[random]") {
  Generator g1(42), g2(42), g3(43);
  Tensor a = randn({20000}, g1, 0.0, 2.0, DType::f64), b = randn({20000}, g2, 0.0, 2.0, DType::f64);
  CHECK(a.to_vector() == b.to_vector());
  CHECK(randn({4}, g1).to_vector() != randn({4}, g3).to_vector());
  CHECK(randn({4}, g1).to_vector() != a.to_vector());  // the stream moved on
  const auto v = a.to_vector();
  double m = 0, s = 0;
  for (double x : v) m += x / v.size();
  for (double x : v) s += (x - m) * (x - m) / v.size();
  CHECK(m == Approx(0.0).margin(0.05));
  CHECK(std::sqrt(s) == Approx(2.0).epsilon(0.03));
  Generator g4(7);
  const auto u = rand_uniform({10000}, g4, -1.0, 3.0, DType::f64).to_vector();
  double um = 0, lo = 10, hi = -10;
  for (double x : u) {
    um += x / u.size();
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  }
  CHECK(um == Approx(1.0).margin(0.05));
  CHECK(lo >= -1.0);
  CHECK(hi <= 3.0);
}

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
