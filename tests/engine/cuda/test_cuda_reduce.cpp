// Sums, means and sum_squares on CUDA against the CPU, and their reproducibility. See compare.h for
// how a case compares.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "tests/engine/cuda/compare.h"

using namespace engine;
using namespace engine::testing;

TEST_CASE("cuda sum and mean over each axis and all elements", "[cuda][reduce]") {
  for (DType dt : kFloatTypes) {
    Tensor x = rnd({3, 5, 7}, 17, dt);
    for (int axis = -1; axis < 3; ++axis)
      for (bool keep : {false, true})
        compare("sum/mean axis " + std::to_string(axis),
                [=](const Ins& in) {
                  return Ins{sum(in[0], axis, keep), mean(in[0], axis, keep)};
                },
                {x});
    compare("sum_all/mean_all", [](const Ins& in) { return Ins{sum_all(in[0]), mean_all(in[0])}; }, {x});
    // Long rows (the block-per-row path) and many rows over a short inner axis (column sums).
    compare("sum long rows", [](const Ins& in) { return Ins{sum(in[0], 1)}; }, {rnd({4, 5000}, 18, dt)});
    compare("sum long columns", [](const Ins& in) { return Ins{sum(in[0], 0)}; }, {rnd({3000, 70}, 19, dt)});
  }
}

TEST_CASE("cuda sum_squares: several chunks, f32 and f64, reproducible", "[cuda][reduce][sum_squares]") {
  for (DType dt : kFloatTypes) {
    compare(
        "sum_squares", [](const Ins& in) { return Ins{sum_squares(in[0])}; }, {rnd({100003}, 21, dt)}, 1e-12);
    compare(
        "sum_squares small", [](const Ins& in) { return Ins{sum_squares(in[0])}; }, {rnd({3, 5}, 22, dt)}, 1e-12);
  }
  Tensor x = rnd({300000}, 23, DType::f32).to(kGpu);
  CHECK(sum_squares(x).item() == sum_squares(x).item());
  CHECK(sum_squares(Tensor::empty({0}, DType::f32, kGpu)).item() == 0.0);
}

TEST_CASE("cuda reduce is bit-reproducible", "[cuda][reduce]") {
  Tensor x = rnd({64, 4096}, 20, DType::f32).to(kGpu);
  const std::vector<float> a = sum(x, 1).to_float_vector(), b = sum(x, 1).to_float_vector();
  const std::vector<float> c = sum(x, 0).to_float_vector(), d = sum(x, 0).to_float_vector();
  CHECK(a == b);
  CHECK(c == d);
}
