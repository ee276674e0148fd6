// grouped_linear: row blocks through their own weights, checked against one linear() per block,
// by finite differences, and for what an empty group must (not) receive.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "tests/support/gradcheck.h"

using namespace engine;
using namespace engine::testing;

namespace {

using Ins = std::vector<Tensor>;

// The same product, one linear() per group on a slice, concatenated.
Tensor per_group(const Tensor& x, const std::vector<int64_t>& offsets, const Ins& w, const Ins& b) {
  Ins parts;
  for (size_t g = 0; g + 1 < offsets.size(); ++g)
    if (offsets[g] != offsets[g + 1])
      parts.push_back(linear(slice(x, 0, offsets[g], offsets[g + 1]), w[g], b.empty() ? Tensor() : b[g]));
  return concat(parts, 0);
}

Ins random_list(size_t count, const Shape& shape, uint64_t seed, DType dt) {
  Ins out;
  for (size_t i = 0; i < count; ++i) out.push_back(random_tensor(shape, seed + i, 1.0, dt));
  return out;
}

}  // namespace

TEST_CASE("grouped_linear matches one linear per group, empty groups included", "[grouped_linear]") {
  // Groups 0, 2 and 5 are empty (first, middle, last): the rows of the others stay in order.
  const std::vector<int64_t> offsets{0, 0, 3, 3, 10, 17, 17};
  Tensor x = random_tensor({17, 12}, 1, 1.0, DType::f32);
  const Ins w = random_list(6, {9, 12}, 10, DType::f32), b = random_list(6, {9}, 20, DType::f32);
  Tensor y = grouped_linear(x, offsets, w, b);
  REQUIRE(y.shape() == Shape{17, 9});
  // The same oneDNN products, possibly single-threaded side by side (another summation order).
  CHECK(max_abs_diff(y, per_group(x, offsets, w, b)) < 1e-5);
  CHECK(max_abs_diff(grouped_linear(x, offsets, w), per_group(x, offsets, w, {})) < 1e-5);
  // Each group really uses its own weight: swapping two weights changes exactly their rows.
  Ins swapped = w;
  std::swap(swapped[3], swapped[4]);
  Tensor y2 = grouped_linear(x, offsets, swapped, b);
  CHECK(max_abs_diff(slice(y2, 0, 0, 3), slice(y, 0, 0, 3)) == 0.0);
  CHECK(max_abs_diff(slice(y2, 0, 3, 10), slice(y, 0, 3, 10)) > 0.1);
  // No rows at all: [0, out].
  CHECK(grouped_linear(Tensor::zeros({0, 12}), {0, 0, 0}, {w[0], w[1]}).shape() == Shape{0, 9});
}

TEST_CASE("grouped_linear gradients by finite differences", "[grouped_linear][gradcheck]") {
  // f64, so the products run on the reference loop (oneDNN's path is checked against
  // per-group linear() in f32 above and below).
  const std::vector<int64_t> offsets{0, 2, 2, 5};
  REQUIRE_GRADCHECK(
      [&](const Ins& in) {
        return grouped_linear(in[0], offsets, {in[1], in[2], in[3]}, {in[4], in[5], in[6]});
      },
      Ins({random_tensor({5, 4}, 1), random_tensor({3, 4}, 2), random_tensor({3, 4}, 3), random_tensor({3, 4}, 4),
           random_tensor({3}, 5), random_tensor({3}, 6), random_tensor({3}, 7)}));
  REQUIRE_GRADCHECK(
      [&](const Ins& in) {
        return grouped_linear(in[0], {0, 1, 4}, {in[1], in[2]});
      },
      Ins({random_tensor({4, 3}, 8), random_tensor({2, 3}, 9), random_tensor({2, 3}, 10)}));
}

TEST_CASE("grouped_linear: an empty group's weight and bias get no gradient, the others match linear",
          "[grouped_linear]") {
  const std::vector<int64_t> offsets{0, 4, 4, 7};
  Tensor x = random_tensor({7, 5}, 30, 1.0, DType::f32);
  Ins w = random_list(3, {6, 5}, 40, DType::f32), b = random_list(3, {6}, 50, DType::f32);
  Tensor weight = random_tensor({7, 6}, 60, 1.0, DType::f32);
  auto grads = [&](bool grouped) {
    Ins leaves{x.detach()};
    for (const Tensor& t : w) leaves.push_back(t.detach());
    for (const Tensor& t : b) leaves.push_back(t.detach());
    for (Tensor& t : leaves) t.set_requires_grad(true);
    const Ins lw(leaves.begin() + 1, leaves.begin() + 4), lb(leaves.begin() + 4, leaves.end());
    Tensor y = grouped ? grouped_linear(leaves[0], offsets, lw, lb) : per_group(leaves[0], offsets, lw, lb);
    backward(sum_all(mul(y, weight)));
    Ins out;
    for (const Tensor& t : leaves) out.push_back(t.grad());
    return out;
  };
  const Ins got = grads(true), want = grads(false);
  CHECK_FALSE(got[2].defined());  // weight 1 (empty group)
  CHECK_FALSE(got[5].defined());  // bias 1
  for (size_t i : {0, 1, 3, 4, 6}) {
    INFO("input " << i);
    REQUIRE(got[i].defined());
    CHECK(max_abs_diff(got[i], want[i]) < 1e-5);
  }
}

TEST_CASE("grouped_linear under bf16 equals per-group linear under bf16", "[grouped_linear][bf16]") {
  if (!bf16_available()) return;
  const std::vector<int64_t> offsets{0, 70, 70, 200};
  Tensor x = random_tensor({200, 64}, 70, 1.0, DType::f32);
  const Ins w = random_list(3, {48, 64}, 80, DType::f32);
  MatmulPrecisionScope scope(MatmulPrecision::bf16);
  Tensor y = grouped_linear(x, offsets, w);
  CHECK(max_abs_diff(y, per_group(x, offsets, w, {})) == 0.0);
  MatmulPrecisionScope exact(MatmulPrecision::f32);
  CHECK(max_abs_diff(y, grouped_linear(x, offsets, w)) > 1e-3);  // really rounded
}

TEST_CASE("grouped_linear rejects inconsistent groups with the reason", "[grouped_linear]") {
  Tensor x = Tensor::zeros({5, 4});
  const Ins w{Tensor::zeros({3, 4}), Tensor::zeros({3, 4})};
  CHECK_THROWS_WITH(grouped_linear(x, {0, 5}, w), Catch::Contains("2 weights need 3 offsets"));
  CHECK_THROWS_WITH(grouped_linear(x, {0, 2, 4}, w), Catch::Contains("from 0 to the row count 5"));
  CHECK_THROWS_WITH(grouped_linear(x, {0, 3, 2, 5}, {w[0], w[0], w[0]}), Catch::Contains("must not decrease"));
  CHECK_THROWS_WITH(grouped_linear(x, {0, 2, 5}, {w[0], Tensor::zeros({2, 4})}), Catch::Contains("weight 1"));
  CHECK_THROWS_WITH(grouped_linear(x, {0, 2, 5}, {Tensor::zeros({3, 2}), w[1]}), Catch::Contains("weight 0"));
  CHECK_THROWS_WITH(grouped_linear(x, {0, 2, 5}, w, {Tensor::zeros({3})}), Catch::Contains("none or one per weight"));
  CHECK_THROWS_WITH(grouped_linear(x, {0, 2, 5}, w, {Tensor::zeros({3}), Tensor::zeros({4})}),
                    Catch::Contains("bias 1"));
}
