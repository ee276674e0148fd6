// Elementwise binary ops (with broadcasting) and affine maps: forward values and gradients.
#include <catch2/catch.hpp>
#include <cmath>

#include "tests/support/gradcheck.h"

using namespace engine;
using engine::testing::random_tensor;

TEST_CASE("binary ops: forward values with each broadcast form", "[binary]") {
  Tensor a = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor row = Tensor::from_vector(std::vector<double>{10, 20, 30}, {3});
  Tensor one = Tensor::from_vector(std::vector<double>{2}, {1});
  CHECK(add(a, row).to_vector() == std::vector<double>{11, 22, 33, 14, 25, 36});
  CHECK(sub(row, a).to_vector() == std::vector<double>{9, 18, 27, 6, 15, 24});
  CHECK(mul(a, one).to_vector() == std::vector<double>{2, 4, 6, 8, 10, 12});
  CHECK(div(one, a).to_vector()[3] == Approx(0.5));
  CHECK(affine(a, 2.0, -1.0).to_vector() == std::vector<double>{1, 3, 5, 7, 9, 11});
  Tensor col = Tensor::from_vector(std::vector<double>{10, 100}, {2, 1});
  CHECK(mul(a, col).to_vector() == std::vector<double>{10, 20, 30, 400, 500, 600});
  CHECK(add(col, row).shape() == Shape{2, 3});
  CHECK(add(col, row).to_vector() == std::vector<double>{20, 30, 40, 110, 120, 130});
  CHECK_THROWS_WITH(add(a, Tensor::zeros({2}, DType::f64)), Catch::Contains("cannot broadcast shapes (2, 3) and (2)"));
  CHECK_THROWS_WITH(add(a, Tensor::zeros({2, 3}, DType::f32)), Catch::Contains("element types differ"));
}

TEST_CASE("binary ops: gradients, equal shapes and broadcasts", "[binary][gradcheck]") {
  const std::vector<std::pair<Shape, Shape>> shapes = {{{3, 5}, {3, 5}}, {{4, 1, 3}, {1, 3}}, {{2, 3, 4}, {3, 4}},
                                                       {{1}, {1}},       {{5, 2}, {1}},       {{1}, {5, 2}},
                                                       {{7}, {2, 7}}};
  for (BinaryOp op : {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div}) {
    for (const auto& [sa, sb] : shapes) {
      INFO("op " << static_cast<int>(op) << " shapes " << shape_str(sa) << " " << shape_str(sb));
      Tensor a = random_tensor(sa, 1), b = random_tensor(sb, 2);
      if (op == BinaryOp::div) b = add_scalar(mul(b, b), 0.5);  // keep away from 0
      REQUIRE_GRADCHECK([op](const std::vector<Tensor>& in) { return binary(op, in[0], in[1]); },
                        std::vector<Tensor>({a, b}));
    }
  }
}

TEST_CASE("the same tensor used twice accumulates both gradients", "[binary][gradcheck]") {
  Tensor a = random_tensor({4, 3}, 3);
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return mul(in[0], add(in[0], in[0])); },
                    std::vector<Tensor>({a}));
}

TEST_CASE("affine: gradient", "[affine][gradcheck]") {
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return affine(in[0], -1.5, 0.25); },
                    std::vector<Tensor>({random_tensor({3, 4}, 4)}));
}
