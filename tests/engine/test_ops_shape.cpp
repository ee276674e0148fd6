// reshape, transpose, permute, slice, concat: values and gradients, views and copies.
#include <catch2/catch.hpp>

#include "tests/support/gradcheck.h"

using namespace engine;
using engine::testing::random_tensor;

namespace {
using Ins = std::vector<Tensor>;
}

TEST_CASE("reshape: -1 inference, errors, gradient", "[reshape][gradcheck]") {
  Tensor x = random_tensor({2, 3, 4}, 1);
  CHECK(reshape(x, {-1, 4}).shape() == Shape{6, 4});
  CHECK(reshape(x, {4, -1}).shape() == Shape{4, 6});
  CHECK_THROWS_WITH(reshape(x, {5, -1}), Catch::Contains("cannot infer -1"));
  CHECK_THROWS_WITH(reshape(x, {-1, -1}), Catch::Contains("more than one -1"));
  CHECK_THROWS_WITH(reshape(x, {7}), Catch::Contains("element counts differ"));
  REQUIRE_GRADCHECK([](const Ins& in) { return reshape(in[0], {4, 6}); }, Ins{x});
  // Reshaping a non-contiguous view copies first, and the gradient still flows.
  REQUIRE_GRADCHECK([](const Ins& in) { return reshape(transpose(in[0], 0, 2), {-1}); }, Ins{x});
}

TEST_CASE("transpose and permute: values and gradients", "[permute][gradcheck]") {
  Tensor x = random_tensor({2, 3, 4}, 2);
  Tensor p = permute(x, {2, 0, 1});
  CHECK(p.shape() == Shape{4, 2, 3});
  const auto xv = x.to_vector(), pv = p.contiguous().to_vector();
  CHECK(pv[1 * 6 + 1 * 3 + 2] == xv[1 * 12 + 2 * 4 + 1]);  // p[1,1,2] == x[1,2,1]
  REQUIRE_GRADCHECK([](const Ins& in) { return permute(in[0], {2, 0, 1}); }, Ins{x});
  REQUIRE_GRADCHECK([](const Ins& in) { return transpose(in[0], -1, 0); }, Ins{x});
  CHECK_THROWS_WITH(permute(x, {0, 0, 1}), Catch::Contains("appears twice"));
  CHECK_THROWS_WITH(permute(x, {0, 1}), Catch::Contains("names 2 axes"));
}

TEST_CASE("slice: values, edges and gradient", "[slice][gradcheck]") {
  Tensor x = random_tensor({3, 5}, 3);
  CHECK(slice(x, 1, 2, 2).numel() == 0);
  CHECK(slice(x, 0, 0, 3).to_vector() == x.to_vector());
  CHECK_THROWS_WITH(slice(x, 1, 3, 6), Catch::Contains("outside axis of size 5"));
  REQUIRE_GRADCHECK([](const Ins& in) { return slice(in[0], 1, 1, 4); }, Ins{x});
  REQUIRE_GRADCHECK([](const Ins& in) { return slice(in[0], 0, 2, 3); }, Ins{x});
  // Two overlapping slices of one tensor accumulate into it.
  REQUIRE_GRADCHECK([](const Ins& in) { return mul(slice(in[0], 1, 0, 3), slice(in[0], 1, 2, 5)); }, Ins{x});
}

TEST_CASE("concat: values, mismatches and gradients", "[concat][gradcheck]") {
  Tensor a = random_tensor({2, 3}, 4), b = random_tensor({2, 1}, 5), c = random_tensor({4, 3}, 6);
  Tensor ab = concat({a, b}, 1);
  CHECK(ab.shape() == Shape{2, 4});
  CHECK(ab.to_vector()[3] == b.to_vector()[0]);
  CHECK_THROWS_WITH(concat({a, b}, 0), Catch::Contains("does not match part 0"));
  REQUIRE_GRADCHECK([](const Ins& in) { return concat({in[0], in[1]}, -1); }, Ins{a, b});
  REQUIRE_GRADCHECK([](const Ins& in) { return concat({in[0], in[1], in[0]}, 0); }, Ins{a, c});
}
