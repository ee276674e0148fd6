// Gradient checks and forward values for the elementwise ops: binary (with broadcasting),
// affine, activations, SwiGLU, and the reductions.
#include <omp.h>

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

TEST_CASE("activations: forward values against the closed forms", "[activation]") {
  Tensor x = Tensor::from_vector(std::vector<double>{-30.0, -1.0, 0.0, 0.5, 40.0}, {5});
  const std::vector<double> v = x.to_vector();
  const auto s = sigmoid(x).to_vector(), sp = softplus(x).to_vector(), si = silu(x).to_vector(),
             g = gelu(x).to_vector();
  for (size_t i = 0; i < v.size(); ++i) {
    CHECK(s[i] == Approx(1.0 / (1.0 + std::exp(-v[i]))).epsilon(1e-12));
    CHECK(sp[i] == Approx(std::log1p(std::exp(v[i]))).epsilon(1e-12));
    CHECK(si[i] == Approx(v[i] / (1.0 + std::exp(-v[i]))).margin(1e-300));
    const double c = std::sqrt(2.0 / M_PI);
    CHECK(g[i] == Approx(0.5 * v[i] * (1 + std::tanh(c * (v[i] + 0.044715 * v[i] * v[i] * v[i])))).margin(1e-300));
  }
  CHECK(std::isfinite(softplus(x).to_vector()[4]));
  const auto phi = normal_cdf(x).to_vector();
  for (size_t i = 0; i < v.size(); ++i) CHECK(phi[i] == Approx(0.5 * std::erfc(-v[i] / std::sqrt(2.0))).margin(1e-15));
  CHECK(phi[2] == 0.5);
}

TEST_CASE("activations: gradients", "[activation][gradcheck]") {
  for (Activation kind :
       {Activation::gelu_tanh, Activation::silu, Activation::sigmoid, Activation::softplus, Activation::relu,
        Activation::tanh, Activation::exp, Activation::log, Activation::square, Activation::normal_cdf}) {
    for (const Shape& shape : {Shape{7}, Shape{3, 1, 4}, Shape{1}}) {
      INFO("activation " << static_cast<int>(kind) << " shape " << shape_str(shape));
      Tensor x = random_tensor(shape, 5 + shape.size());
      if (kind == Activation::log) x = add_scalar(mul(x, x), 0.2);
      if (kind == Activation::relu) x = add_scalar(x, 0.01);  // nudge off the kink at 0
      REQUIRE_GRADCHECK([kind](const std::vector<Tensor>& in) { return activation(kind, in[0]); },
                        std::vector<Tensor>({x}));
    }
  }
}

TEST_CASE("swiglu: forward and gradient", "[swiglu][gradcheck]") {
  Tensor gate = random_tensor({4, 6}, 7), up = random_tensor({4, 6}, 8);
  CHECK(engine::testing::max_abs_diff(swiglu(gate, up), mul(silu(gate), up)) < 1e-14);
  REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return swiglu(in[0], in[1]); },
                    std::vector<Tensor>({gate, up}));
  CHECK_THROWS_WITH(swiglu(gate, random_tensor({4, 5}, 9)), Catch::Contains("swiglu"));
}

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
