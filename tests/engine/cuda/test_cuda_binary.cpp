// Elementwise binary ops and affine maps on CUDA against the CPU. See compare.h for how a case
// compares.
#include <catch2/catch.hpp>
#include <string>
#include <utility>
#include <vector>

#include "tests/engine/cuda/compare.h"

using namespace engine;
using namespace engine::testing;

TEST_CASE("cuda binary: add/sub/mul/div with every broadcast form", "[cuda][binary]") {
  const std::vector<std::pair<Shape, Shape>> forms = {{{4, 6}, {4, 6}}, {{3, 4, 6}, {6}}, {{3, 4, 6}, {4, 6}},
                                                      {{6}, {3, 4, 6}}, {{4, 6}, {1}},    {{1}, {4, 6}}};
  for (DType dt : kFloatTypes)
    for (const auto& [sa, sb] : forms)
      for (BinaryOp op : {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div}) {
        Tensor a = rnd(sa, 11, dt);
        Tensor b = op == BinaryOp::div ? uniform(sb, 12, dt, 0.5, 2.0) : rnd(sb, 12, dt);
        compare("binary " + std::to_string(static_cast<int>(op)) + " " + shape_str(sa) + " " + shape_str(sb),
                [op](const Ins& x) { return Ins{binary(op, x[0], x[1])}; }, {a, b});
      }
}

TEST_CASE("cuda affine, scale, neg, add_scalar", "[cuda][affine]") {
  for (DType dt : kFloatTypes)
    compare("affine",
            [](const Ins& x) {
              return Ins{affine(x[0], 1.5, -0.25), scale(x[0], -3.0), neg(x[0]), add_scalar(x[0], 2.0)};
            },
            {rnd({5, 7}, 13, dt)});
}
