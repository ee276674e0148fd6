// The row gather, scatter-add and embedding lookup (engine/ops/gather_scatter.h): values,
// repeated and empty indices, weights, gradients, index checks, and determinism of the scatter
// across thread counts.
#include <omp.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "tests/support/gradcheck.h"

using namespace engine;
using engine::testing::doubles;
using engine::testing::ids;
using engine::testing::random_tensor;

TEST_CASE("gather_rows: values with repeated and empty indices", "[gather]") {
  Tensor x = doubles({0, 1, 10, 11, 20, 21}, {3, 2});
  Tensor out = gather_rows(x, ids({2, 0, 2, 1}));
  REQUIRE(out.shape() == Shape{4, 2});
  CHECK(out.to_vector() == std::vector<double>{20, 21, 0, 1, 20, 21, 10, 11});
  Tensor none = gather_rows(x, Tensor::zeros({0}, DType::i32));
  CHECK(none.shape() == Shape{0, 2});
  // Integer rows too (routing tables), and a strided x.
  Tensor table = Tensor::from_vector(std::vector<int32_t>{5, 6, 7, 8}, {2, 2});
  CHECK(gather_rows(table, ids({1, 1})).to_int_vector() == std::vector<int32_t>{7, 8, 7, 8});
  CHECK(gather_rows(transpose(x, 0, 1), ids({1})).to_vector() == std::vector<double>{1, 11, 21});
}

TEST_CASE("gather_rows: gradient accumulates over repeated indices", "[gather][gradcheck]") {
  Tensor index = ids({3, 0, 3, 3, 1});
  REQUIRE_GRADCHECK([index](const std::vector<Tensor>& in) { return gather_rows(in[0], index); },
                    std::vector<Tensor>({random_tensor({4, 3}, 50)}));
  Tensor x = random_tensor({4, 3}, 51);
  x.set_requires_grad(true);
  backward(sum_all(gather_rows(x, index)));
  CHECK(x.grad().to_vector() == std::vector<double>{1, 1, 1, 1, 1, 1, 0, 0, 0, 3, 3, 3});
}

TEST_CASE("scatter_add_rows: values, repeated indices, weights, empty index", "[scatter]") {
  Tensor src = doubles({1, 2, 3, 4, 5, 6, 7, 8}, {4, 2});
  Tensor index = ids({2, 0, 2, 2});
  CHECK(scatter_add_rows(src, index, 3).to_vector() == std::vector<double>{3, 4, 0, 0, 1 + 5 + 7, 2 + 6 + 8});
  Tensor weight = doubles({0.5, 2, -1, 10}, {4});
  CHECK(scatter_add_rows(src, index, 4, weight).to_vector() ==
        std::vector<double>{6, 8, 0, 0, 0.5 - 5 + 70, 1 - 6 + 80, 0, 0});
  Tensor empty = scatter_add_rows(Tensor::zeros({0, 2}, DType::f64), Tensor::zeros({0}, DType::i32), 3);
  CHECK(empty.to_vector() == std::vector<double>(6, 0.0));
  CHECK(scatter_add_rows(Tensor::zeros({0, 2}, DType::f64), Tensor::zeros({0}, DType::i32), 0).shape() == Shape{0, 2});
}

TEST_CASE("scatter_add_rows: gradients of src and weight", "[scatter][gradcheck]") {
  Tensor index = ids({1, 3, 1, 0, 1});
  REQUIRE_GRADCHECK([index](const std::vector<Tensor>& in) { return scatter_add_rows(in[0], index, 4); },
                    std::vector<Tensor>({random_tensor({5, 3}, 52)}));
  REQUIRE_GRADCHECK([index](const std::vector<Tensor>& in) { return scatter_add_rows(in[0], index, 4, in[1]); },
                    std::vector<Tensor>({random_tensor({5, 3}, 53), random_tensor({5}, 54)}));
  // Only one of the two wants a gradient.
  Tensor fixed_src = random_tensor({5, 3}, 55), fixed_weight = random_tensor({5}, 56);
  REQUIRE_GRADCHECK([=](const std::vector<Tensor>& in) { return scatter_add_rows(fixed_src, index, 4, in[0]); },
                    std::vector<Tensor>({random_tensor({5}, 57)}));
  REQUIRE_GRADCHECK([=](const std::vector<Tensor>& in) { return scatter_add_rows(in[0], index, 4, fixed_weight); },
                    std::vector<Tensor>({random_tensor({5, 3}, 58)}));
}

TEST_CASE("gather then weighted scatter: the MoE dispatch and combine round trip", "[gather][scatter][gradcheck]") {
  Tensor index = ids({0, 2, 2, 1, 0, 3});
  REQUIRE_GRADCHECK(
      [index](const std::vector<Tensor>& in) { return scatter_add_rows(gather_rows(in[0], index), index, 4, in[1]); },
      std::vector<Tensor>({random_tensor({4, 5}, 59), random_tensor({6}, 60)}));
}

TEST_CASE("scatter_add_rows: the same bits for any thread count", "[scatter]") {
  const int64_t m = 5000, d = 96, n = 7;  // many collisions, enough columns to split
  std::vector<int32_t> index(static_cast<size_t>(m));
  for (int64_t i = 0; i < m; ++i) index[i] = static_cast<int32_t>((i * 5 + i / 3) % n);
  Tensor src = random_tensor({m, d}, 61, 1.0, DType::f32), weight = random_tensor({m}, 62, 1.0, DType::f32);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const std::vector<float> serial = scatter_add_rows(src, ids(index), n, weight).to_float_vector();
  omp_set_num_threads(std::max(threads, 2));
  const std::vector<float> parallel = scatter_add_rows(src, ids(index), n, weight).to_float_vector();
  omp_set_num_threads(threads);
  CHECK(serial == parallel);
  // And the sums are right: compare with a double-precision reference.
  const std::vector<double> s = src.to_vector(), w = weight.to_vector();
  std::vector<double> expected(static_cast<size_t>(n * d), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t c = 0; c < d; ++c) expected[index[i] * d + c] += w[i] * s[i * d + c];
  double worst = 0.0;
  for (size_t i = 0; i < expected.size(); ++i) worst = std::max(worst, std::fabs(expected[i] - parallel[i]));
  CHECK(worst < 1e-3);
}

TEST_CASE("embedding: lookup keeps the id shape and its gradient sums over repeats", "[embedding][gradcheck]") {
  Tensor table = doubles({0, 1, 10, 11, 20, 21}, {3, 2});
  Tensor id_grid = Tensor::from_vector(std::vector<int32_t>{2, 0, 2, 1, 1, 0}, {2, 3});
  Tensor out = embedding(table, id_grid);
  REQUIRE(out.shape() == Shape{2, 3, 2});
  CHECK(out.to_vector() == std::vector<double>{20, 21, 0, 1, 20, 21, 10, 11, 10, 11, 0, 1});
  CHECK(embedding(table, Tensor::zeros({2, 0}, DType::i32)).shape() == Shape{2, 0, 2});
  REQUIRE_GRADCHECK([id_grid](const std::vector<Tensor>& in) { return embedding(in[0], id_grid); },
                    std::vector<Tensor>({random_tensor({3, 4}, 63)}));
}

TEST_CASE("row ops: out-of-range indices name the op, position and value", "[gather][scatter][embedding]") {
  Tensor x = random_tensor({3, 2}, 64);
  CHECK_THROWS_WITH(gather_rows(x, ids({0, 3})),
                    Catch::Contains("gather_rows: index 3 at position 1 is out of range [0, 3)"));
  CHECK_THROWS_WITH(gather_rows(x, ids({1, 2, -1})), Catch::Contains("gather_rows: index -1 at position 2"));
  CHECK_THROWS_WITH(scatter_add_rows(random_tensor({2, 2}, 65), ids({1, 5}), 4),
                    Catch::Contains("scatter_add_rows: index 5 at position 1 is out of range [0, 4)"));
  CHECK_THROWS_WITH(embedding(x, Tensor::from_vector(std::vector<int32_t>{0, 1, 7, 2}, {2, 2})),
                    Catch::Contains("embedding: id 7 at position 2 is out of range [0, 3)"));
  // Malformed arguments.
  CHECK_THROWS_WITH(gather_rows(x, Tensor::zeros({2}, DType::f64)), Catch::Contains("index must be a 1-D i32 tensor"));
  CHECK_THROWS_WITH(gather_rows(random_tensor({6}, 66), ids({0})), Catch::Contains("x must be [N, d]"));
  CHECK_THROWS_WITH(scatter_add_rows(x, ids({0, 1}), 3), Catch::Contains("index has 2 entries, src has 3 rows"));
  CHECK_THROWS_WITH(scatter_add_rows(x, ids({0, 1, 1}), 3, random_tensor({2}, 67)),
                    Catch::Contains("weight must be [3]"));
  CHECK_THROWS_WITH(scatter_add_rows(x, ids({0, 1, 1}), 3, random_tensor({3}, 68, 1.0, DType::f32)),
                    Catch::Contains("must be f64 on src's device"));
  CHECK_THROWS_WITH(embedding(x, Tensor::zeros({2}, DType::f64)), Catch::Contains("ids must be an i32 tensor"));
}
