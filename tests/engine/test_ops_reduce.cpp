// Sums, means and sum_squares: values and gradients over each axis, precision over long axes,
// and sum_squares independent of the thread count.
#include <omp.h>

#include <catch2/catch.hpp>
#include <cmath>

#include "tests/support/gradcheck.h"

using namespace engine;
using engine::testing::random_tensor;

TEST_CASE("sum and mean: values and gradients over each axis", "[reduce][gradcheck]") {
  Tensor a = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(sum(a, 0).to_vector() == std::vector<double>{5, 7, 9});
  CHECK(sum(a, -1).to_vector() == std::vector<double>{6, 15});
  CHECK(mean(a, 1, true).shape() == Shape{2, 1});
  CHECK(mean_all(a).item() == Approx(3.5));
  for (int axis : {0, 1, 2, -1}) {
    for (bool keep : {false, true}) {
      INFO("axis " << axis << " keepdim " << keep);
      Tensor x = random_tensor({3, 1, 5}, 10);
      REQUIRE_GRADCHECK([=](const std::vector<Tensor>& in) { return sum(in[0], axis, keep); },
                        std::vector<Tensor>({x}));
      REQUIRE_GRADCHECK([=](const std::vector<Tensor>& in) { return mean(in[0], axis, keep); },
                        std::vector<Tensor>({x}));
    }
  }
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return mean_all(in[0]); },
                    std::vector<Tensor>({random_tensor({4, 3}, 11)}));
  CHECK_THROWS_WITH(sum(a, 2), Catch::Contains("axis 2 out of range"));
}

TEST_CASE("sum_squares: in double, over several chunks, independent of the thread count", "[reduce][sum_squares]") {
  // 100003 f32 values (four 32768-element chunks, the last partial): two of 1e20, whose f32
  // squares would overflow, the rest small enough to vanish next to them in float.
  std::vector<float> v(100003);
  for (size_t i = 0; i < v.size(); ++i) v[i] = 0.001f * static_cast<float>(i % 17);
  v[5] = 1e20f;
  v[70000] = -1e20f;
  Tensor x = Tensor::from_vector(v, {100003});
  double want = 0.0;
  for (float f : v) want += static_cast<double>(f) * static_cast<double>(f);
  const Tensor got = sum_squares(x);
  REQUIRE(got.dtype() == DType::f64);
  REQUIRE(got.shape() == Shape{1});
  CHECK(got.item() == Approx(want).epsilon(1e-12));
  const std::vector<double> small = sum_squares(slice(x, 0, 10, 60000)).to_vector();  // a view: copied first
  double want_small = 0.0;
  for (size_t i = 10; i < 60000; ++i) want_small += static_cast<double>(v[i]) * static_cast<double>(v[i]);
  CHECK(small[0] == Approx(want_small).epsilon(1e-12));
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const double one_thread = sum_squares(x).item();
  omp_set_num_threads(threads);
  CHECK(one_thread == got.item());  // bit for bit
  CHECK(sum_squares(Tensor::zeros({0})).item() == 0.0);
  CHECK_THROWS_WITH(sum_squares(Tensor::from_vector(std::vector<int32_t>{1, 2}, {2})),
                    Catch::Contains("sum_squares: needs a floating-point tensor"));
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return sum_squares(in[0]); },
                    std::vector<Tensor>({random_tensor({3, 4}, 60)}));
}

TEST_CASE("sum over a long axis keeps float precision", "[reduce]") {
  // 2^24 + many small values: a float running sum would stall; the double accumulator does not.
  std::vector<float> v(100001, 1.0f);
  v[0] = 16777216.0f;
  Tensor x = Tensor::from_vector(v, {100001});
  CHECK(sum_all(x).item() == Approx(16777216.0 + 100000.0));
}
