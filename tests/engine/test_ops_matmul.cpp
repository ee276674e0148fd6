// matmul (2-D, batched, folded leading axes; every transpose combination) and linear.
#include <array>
#include <catch2/catch.hpp>

#include "tests/support/gradcheck.h"

using namespace engine;
using engine::testing::max_abs_diff;
using engine::testing::random_tensor;

namespace {
using Ins = std::vector<Tensor>;

// Naive reference product in double.
std::vector<double> reference(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  const auto av = a.to_vector(), bv = b.to_vector();
  const int64_t batch = a.ndim() == 3 ? a.size(0) : 1;
  const int64_t M = ta ? a.size(-1) : a.size(-2), K = ta ? a.size(-2) : a.size(-1), N = tb ? b.size(-2) : b.size(-1);
  std::vector<double> c(batch * M * N, 0.0);
  for (int64_t s = 0; s < batch; ++s)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j)
        for (int64_t p = 0; p < K; ++p) {
          const double x = ta ? av[s * M * K + p * M + i] : av[s * M * K + i * K + p];
          const double y = tb ? bv[s * K * N + j * K + p] : bv[s * K * N + p * N + j];
          c[s * M * N + i * N + j] += x * y;
        }
  return c;
}

Shape stored(int64_t rows, int64_t cols, bool transposed, int64_t batch = 0) {
  Shape s = transposed ? Shape{cols, rows} : Shape{rows, cols};
  if (batch) s.insert(s.begin(), batch);
  return s;
}
}  // namespace

TEST_CASE("matmul f32 (oneDNN) matches a double reference for every transpose combination", "[matmul]") {
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (auto [M, K, N] : std::vector<std::array<int64_t, 3>>{{1, 1, 1}, {7, 5, 3}, {64, 33, 17}, {1, 128, 9}}) {
        INFO("M " << M << " K " << K << " N " << N << " ta " << ta << " tb " << tb);
        Tensor a = random_tensor(stored(M, K, ta), 1, 1.0, DType::f32),
               b = random_tensor(stored(K, N, tb), 2, 1.0, DType::f32);
        Tensor c = matmul(a, b, ta, tb);
        CHECK(c.shape() == Shape{M, N});
        const auto ref = reference(a, b, ta, tb), got = c.to_vector();
        for (size_t i = 0; i < ref.size(); ++i) REQUIRE(got[i] == Approx(ref[i]).margin(1e-4 * K));
      }
}

TEST_CASE("batched matmul matches the reference", "[matmul]") {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Tensor a = random_tensor(stored(5, 4, ta, 3), 3, 1.0, DType::f32),
             b = random_tensor(stored(4, 6, tb, 3), 4, 1.0, DType::f32);
      const auto ref = reference(a, b, ta, tb), got = matmul(a, b, ta, tb).to_vector();
      for (size_t i = 0; i < ref.size(); ++i) REQUIRE(got[i] == Approx(ref[i]).margin(1e-4));
    }
}

TEST_CASE("matmul gradients: 2-D, batched, folded, all transposes", "[matmul][gradcheck]") {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      INFO("ta " << ta << " tb " << tb);
      REQUIRE_GRADCHECK([=](const Ins& in) { return matmul(in[0], in[1], ta, tb); },
                        Ins({random_tensor(stored(3, 4, ta), 5), random_tensor(stored(4, 2, tb), 6)}));
      REQUIRE_GRADCHECK([=](const Ins& in) { return matmul(in[0], in[1], ta, tb); },
                        Ins({random_tensor(stored(1, 3, ta, 2), 7), random_tensor(stored(3, 1, tb, 2), 8)}));
    }
  REQUIRE_GRADCHECK([](const Ins& in) { return matmul(in[0], in[1], false, true); },
                    Ins({random_tensor({2, 3, 4}, 9), random_tensor({5, 4}, 10)}));
}

TEST_CASE("matmul of a transposed view equals matmul with the transpose flag", "[matmul]") {
  Tensor a = random_tensor({6, 4}, 11, 1.0, DType::f32), b = random_tensor({6, 5}, 12, 1.0, DType::f32);
  CHECK(max_abs_diff(matmul(transpose(a, 0, 1), b), matmul(a, b, true, false)) < 1e-5);
}

TEST_CASE("matmul with varying row counts (MoE experts) stays exact", "[matmul]") {
  // Past a few distinct row counts the CPU backend switches to a runtime-rows primitive.
  Tensor w = random_tensor({32, 48}, 13, 1.0, DType::f32);
  for (int64_t rows : {1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 0, 7}) {
    Tensor x = random_tensor({rows, 32}, 14 + rows, 1.0, DType::f32);
    const auto ref = reference(x, w, false, false), got = matmul(x, w).to_vector();
    for (size_t i = 0; i < ref.size(); ++i) REQUIRE(got[i] == Approx(ref[i]).margin(1e-4));
    Tensor xt = random_tensor({32, rows}, 15 + rows, 1.0, DType::f32);
    const auto ref_t = reference(xt, w, true, false), got_t = matmul(xt, w, true, false).to_vector();
    for (size_t i = 0; i < ref_t.size(); ++i) REQUIRE(got_t[i] == Approx(ref_t[i]).margin(1e-4));
  }
}

TEST_CASE("matmul with a varying inner size (expert weight gradients) stays exact", "[matmul]") {
  // dW = dY^T X over an expert's rows: the inner size changes every step, and past a few sizes
  // the CPU backend switches to a runtime-K primitive. Both stored layouts of each side.
  for (bool tb : {false, true})
    for (int64_t rows : {1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 0, 7, 144}) {
      INFO("rows " << rows << " tb " << tb);
      Tensor dy = random_tensor({rows, 24}, 40 + rows, 1.0, DType::f32);
      Tensor x = random_tensor(tb ? Shape{16, rows} : Shape{rows, 16}, 41 + rows, 1.0, DType::f32);
      const auto ref = reference(dy, x, true, tb), got = matmul(dy, x, true, tb).to_vector();
      REQUIRE(got.size() == ref.size());
      for (size_t i = 0; i < ref.size(); ++i) REQUIRE(got[i] == Approx(ref[i]).margin(1e-4 * (rows + 1)));
    }
}

TEST_CASE("matmul rejects mismatched operands", "[matmul]") {
  Tensor a = Tensor::zeros({3, 4}), b = Tensor::zeros({5, 2});
  CHECK_THROWS_WITH(matmul(a, b), Catch::Contains("inner dimensions differ"));
  CHECK_THROWS_WITH(matmul(Tensor::zeros({2, 3, 4}), Tensor::zeros({3, 4, 2})), Catch::Contains("batch sizes differ"));
  CHECK_THROWS_WITH(matmul(a, Tensor::zeros({4, 2}, DType::f64)), Catch::Contains("share a floating type"));
}

TEST_CASE("linear: x W^T + b with fused bias, values and gradients", "[linear][gradcheck]") {
  Tensor x = random_tensor({2, 3, 4}, 16, 1.0, DType::f32), w = random_tensor({5, 4}, 17, 1.0, DType::f32),
         b = random_tensor({5}, 18, 1.0, DType::f32);
  CHECK(max_abs_diff(linear(x, w, b), add(matmul(x, w, false, true), b)) < 1e-5);
  CHECK(linear(x, w).shape() == Shape{2, 3, 5});
  REQUIRE_GRADCHECK([](const Ins& in) { return linear(in[0], in[1], in[2]); },
                    Ins({random_tensor({2, 3, 4}, 19), random_tensor({5, 4}, 20), random_tensor({5}, 21)}));
  REQUIRE_GRADCHECK([](const Ins& in) { return linear(in[0], in[1]); },
                    Ins({random_tensor({1, 4}, 22), random_tensor({1, 4}, 23)}));
  CHECK_THROWS_WITH(linear(x, Tensor::zeros({5, 3})), Catch::Contains("does not match weight"));
  CHECK_THROWS_WITH(linear(x, w, Tensor::zeros({4})), Catch::Contains("bias must be [5]"));
}
