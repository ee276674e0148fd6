// bf16 matrix products (MatmulPrecision::bf16): operands rounded to bfloat16, sums in f32.
// The reference rounds the operands with its own method (frexp + nearest-even on the 8-bit
// mantissa) and sums in double; the engine must match it to f32 accumulation error and must
// differ from the unrounded product (or the rounding did not happen).
#include <catch2/catch.hpp>
#include <cmath>

#include "tests/support/gradcheck.h"

using namespace engine;
using engine::testing::bf16_available;
using engine::testing::max_abs_diff;
using engine::testing::random_tensor;

namespace {

double round_bf16(float x) {
  int exponent = 0;
  const double mantissa = std::frexp(static_cast<double>(x), &exponent);  // [0.5, 1): 8 significant bits
  return std::ldexp(std::nearbyint(std::ldexp(mantissa, 8)), exponent - 8);
}

// op(A) @ op(B) in double from operands rounded (or not) to bf16: the engine's f64 product,
// plain loops checked against a naive reference in test_ops_matmul.cpp (and unaffected by the
// bf16 setting: the last case here).
Tensor product(const Tensor& a, const Tensor& b, bool ta, bool tb, bool rounded) {
  auto as_f64 = [rounded](const Tensor& t) {
    std::vector<double> v = t.to_vector();
    if (rounded)
      for (double& x : v) x = round_bf16(static_cast<float>(x));
    return Tensor::from_vector(v, t.shape());
  };
  MatmulPrecisionScope exact(MatmulPrecision::f32);
  return matmul(as_f64(a), as_f64(b), ta, tb);
}

}  // namespace

TEST_CASE("bf16 rounding of the test's reference is what bfloat16 means", "[matmul][bf16]") {
  // 8 significant bits: the spacing just above 1 is 1/128.
  CHECK(round_bf16(1.0f) == 1.0);
  CHECK(round_bf16(1.0f + 1.0f / 256) == 1.0);                            // a tie: to even (down)
  CHECK(round_bf16(1.0f + 3.0f / 256) == 1.0 + 2.0 / 128);                // a tie: to even (up)
  CHECK(round_bf16(1.0f + 1.0f / 256 + 1.0f / 4096) == 1.0 + 1.0 / 128);  // above half: up
  CHECK(round_bf16(1.0f + 1.0f / 512) == 1.0);                            // below half: down
  CHECK(round_bf16(-3.0f) == -3.0);
}

TEST_CASE("bf16 matmul: rounded operands, f32 sums, every transpose and varying sizes", "[matmul][bf16]") {
  if (!bf16_available()) return;
  MatmulPrecisionScope scope(MatmulPrecision::bf16);
  REQUIRE(matmul_precision() == MatmulPrecision::bf16);
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      // Many row counts and inner sizes: past a few, the padded-shape path takes over.
      for (int64_t rows : {1, 3, 17, 64, 65, 100, 130, 200, 257, 300, 5, 77}) {
        INFO("rows " << rows << " ta " << ta << " tb " << tb);
        const int64_t K = 48, N = 40;
        Tensor a = random_tensor(ta ? Shape{K, rows} : Shape{rows, K}, 60 + rows, 1.0, DType::f32);
        Tensor b = random_tensor(tb ? Shape{N, K} : Shape{K, N}, 61 + rows, 1.0, DType::f32);
        const Tensor got = matmul(a, b, ta, tb);
        CHECK(max_abs_diff(got, product(a, b, ta, tb, true)) < 1e-4);
        CHECK(max_abs_diff(got, product(a, b, ta, tb, false)) > 1e-3);  // the rounding happened
        // dW-shaped: the inner size is the row count.
        Tensor dy = random_tensor({rows, 24}, 62 + rows, 1.0, DType::f32),
               x = random_tensor({rows, 16}, 63, 1.0, DType::f32);
        const Tensor dw = matmul(dy, x, true, false);
        CHECK(max_abs_diff(dw, product(dy, x, true, false, true)) < 1e-4 * std::sqrt(static_cast<double>(rows)) + 1e-5);
      }
}

TEST_CASE("bf16 gemm accumulates into C and adds the bias on padded row counts", "[matmul][bf16]") {
  if (!bf16_available()) return;
  const int64_t K = 32, N = 24;
  Tensor w = random_tensor({K, N}, 70, 1.0, DType::f32), bias = random_tensor({N}, 71, 1.0, DType::f32);
  for (int64_t rows : {2, 9, 31, 33, 70, 99, 129, 150, 190, 250, 11}) {
    INFO("rows " << rows);
    Tensor a = random_tensor({rows, K}, 72 + rows, 1.0, DType::f32);
    Tensor c = random_tensor({rows, N}, 73 + rows, 1.0, DType::f32);
    const Tensor c0 = c.to(DType::f64);
    GemmArgs g;
    g.m = rows;
    g.n = N;
    g.k = K;
    g.beta = 1.0;
    g.precision = MatmulPrecision::bf16;
    cpu::gemm(g, a, w, bias, c);
    const Tensor want = add(add(product(a, w, false, false, true), c0), bias.to(DType::f64));
    CHECK(max_abs_diff(c, want) < 1e-4);
  }
}

TEST_CASE("a product's backward runs at the precision of its forward", "[matmul][bf16]") {
  if (!bf16_available()) return;
  Tensor x = random_tensor({6, 32}, 80, 1.0, DType::f32), w = random_tensor({8, 32}, 81, 1.0, DType::f32);
  w.set_requires_grad(true);
  Tensor y;
  {
    MatmulPrecisionScope scope(MatmulPrecision::bf16);
    y = linear(x, w);
  }
  REQUIRE(matmul_precision() == MatmulPrecision::f32);  // the scope ended before backward
  Tensor dy = random_tensor({6, 8}, 82, 1.0, DType::f32);
  backward(sum_all(mul(y, dy)));
  const Tensor dw = w.grad();  // dW = dY^T X, from bf16-rounded operands
  CHECK(max_abs_diff(dw, product(dy, x, true, false, true)) < 1e-4);
  CHECK(max_abs_diff(dw, product(dy, x, true, false, false)) > 1e-3);
}

TEST_CASE("f64 products ignore the bf16 setting", "[matmul][bf16]") {
  MatmulPrecisionScope scope(MatmulPrecision::bf16);
  Tensor a = random_tensor({5, 7}, 90), b = random_tensor({7, 3}, 91);
  CHECK(max_abs_diff(matmul(a, b), product(a, b, false, false, false)) < 1e-12);
}
