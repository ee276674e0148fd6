// topk: selection order, ties, NaN, both selection paths, strided input and gradients.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <numeric>
#include <vector>

#include "tests/support/gradcheck.h"

using namespace engine;
using engine::testing::doubles;
using engine::testing::random_tensor;

namespace {

// Row-wise reference: indices of the k largest, ties to the lower index (a stable sort).
std::vector<int32_t> reference_topk_indices(const std::vector<double>& x, int64_t n, int64_t k) {
  std::vector<int32_t> out;
  for (size_t row = 0; row < x.size() / n; ++row) {
    std::vector<int32_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    const double* r = x.data() + row * n;
    std::stable_sort(order.begin(), order.end(), [r](int32_t a, int32_t b) { return r[a] > r[b]; });
    out.insert(out.end(), order.begin(), order.begin() + k);
  }
  return out;
}

}  // namespace

TEST_CASE("topk: values descending, ties to the lower index, negative rows", "[topk]") {
  Tensor x = doubles({1, 3, 3, 2, 3, -5, -1, -3, -1, -2}, {2, 5});
  TopK top = topk(x, 3);
  REQUIRE(top.values.shape() == Shape{2, 3});
  REQUIRE(top.indices.dtype() == DType::i32);
  CHECK(top.values.to_vector() == std::vector<double>{3, 3, 3, -1, -1, -2});
  CHECK(top.indices.to_int_vector() == std::vector<int32_t>{1, 2, 4, 1, 3, 4});
}

TEST_CASE("topk: k = 1 is the argmax, k = n is a full descending sort", "[topk]") {
  Tensor x = doubles({0.5, -2, 7, 7, 1, -4, -0.5, -3, -0.25, -9}, {2, 5});
  TopK one = topk(x, 1);
  CHECK(one.values.to_vector() == std::vector<double>{7, -0.25});
  CHECK(one.indices.to_int_vector() == std::vector<int32_t>{2, 3});
  TopK all = topk(x, 5);
  CHECK(all.values.to_vector() == std::vector<double>{7, 7, 1, 0.5, -2, -0.25, -0.5, -3, -4, -9});
  CHECK(all.indices.to_int_vector() == std::vector<int32_t>{2, 3, 4, 0, 1, 3, 1, 2, 0, 4});
}

TEST_CASE("topk: NaN ranks below every number, -inf included", "[topk]") {
  Tensor x = doubles({NAN, 1, NAN, -INFINITY, 0}, {5});
  TopK top = topk(x, 5);
  CHECK(top.indices.to_int_vector() == std::vector<int32_t>{1, 4, 3, 0, 2});
  const std::vector<double> v = top.values.to_vector();
  CHECK(v[0] == 1.0);
  CHECK(v[2] == -INFINITY);
  CHECK(std::isnan(v[3]));
  CHECK(topk(x, 2).indices.to_int_vector() == std::vector<int32_t>{1, 4});
  // The wide-row path (k above the insertion buffer) uses the same order.
  std::vector<double> wide(80, -1.0);
  wide[3] = NAN;
  wide[50] = 2.0;
  CHECK(topk(doubles(wide, {80}), 80).indices.to_int_vector()[0] == 50);
  CHECK(topk(doubles(wide, {80}), 80).indices.to_int_vector()[79] == 3);
}

TEST_CASE("topk: both selection paths agree with a stable-sort reference", "[topk]") {
  const int64_t rows = 6, n = 100;
  // Values rounded to a few levels: many ties, so the tie rule is exercised in both paths.
  std::vector<double> x = random_tensor({rows, n}, 40).to_vector();
  for (double& e : x) e = std::round(e * 2.0) / 2.0;
  for (int64_t k : {1, 2, 8, 31, 32, 33, 64, 100}) {
    INFO("k " << k);
    TopK top = topk(doubles(x, {rows, n}), k);
    const std::vector<int32_t> expected = reference_topk_indices(x, n, k);
    REQUIRE(top.indices.to_int_vector() == expected);
    const std::vector<double> values = top.values.to_vector();
    for (size_t i = 0; i < expected.size(); ++i) CHECK(values[i] == x[(i / k) * n + expected[i]]);
  }
}

TEST_CASE("topk: leading axes, strided input and f32", "[topk]") {
  Tensor x = random_tensor({3, 4, 6}, 41);
  Tensor strided = transpose(x, 0, 1);  // [4, 3, 6], not contiguous
  REQUIRE_FALSE(strided.is_contiguous());
  TopK a = topk(strided, 2), b = topk(strided.clone(), 2);
  CHECK(a.values.shape() == Shape{4, 3, 2});
  CHECK(a.values.to_vector() == b.values.to_vector());
  CHECK(a.indices.to_int_vector() == b.indices.to_int_vector());
  TopK f = topk(x.to(DType::f32), 3);
  CHECK(f.values.dtype() == DType::f32);
  CHECK(f.indices.to_int_vector() == topk(x, 3).indices.to_int_vector());
}

TEST_CASE("topk: rejects k outside [1, n]", "[topk]") {
  Tensor x = random_tensor({2, 5}, 42);
  CHECK_THROWS_WITH(topk(x, 6),
                    Catch::Contains("topk") && Catch::Contains("k must be in [1, 5]") && Catch::Contains("k = 6"));
  CHECK_THROWS_WITH(topk(x, 0), Catch::Contains("k must be in [1, 5]"));
  CHECK_THROWS_WITH(topk(x, -1), Catch::Contains("got k = -1"));
  CHECK_THROWS_WITH(topk(Tensor::zeros({3}, DType::i32), 1), Catch::Contains("needs f32 or f64"));
}

TEST_CASE("topk: gradient reaches the selected positions only", "[topk][gradcheck]") {
  // Distinct random entries: no ties, so the selection is stable under the finite differences.
  for (int64_t k : {1, 2, 6}) {
    INFO("k " << k);
    REQUIRE_GRADCHECK([k](const std::vector<Tensor>& in) { return topk(in[0], k).values; },
                      std::vector<Tensor>({random_tensor({3, 6}, 43)}));
  }
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return topk(in[0], 40).values; },
                    std::vector<Tensor>({random_tensor({2, 50}, 44)}));

  Tensor x = doubles({0.1, 0.9, 0.5, 0.7}, {4});
  x.set_requires_grad(true);
  TopK top = topk(x, 2);
  CHECK(top.values.requires_grad());
  CHECK_FALSE(top.indices.requires_grad());
  backward(sum_all(mul(top.values, doubles({2.0, 3.0}, {2}))));
  CHECK(x.grad().to_vector() == std::vector<double>{0, 2, 0, 3});
}
