// randn and rand_uniform: reproducible from (seed, offset), with the right statistics.
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
