// The tape: reverse order, accumulation, no-grad scopes, release of saved activations,
// leaves keep their gradients, intermediates do not.
#include <catch2/catch.hpp>

#include "tests/support/gradcheck.h"

using namespace engine;

TEST_CASE("backward of a small expression gives the hand-derived gradients", "[tape]") {
  Tensor x = Tensor::from_vector(std::vector<double>{2.0}, {1}).set_requires_grad(true);
  Tensor y = Tensor::from_vector(std::vector<double>{3.0}, {1}).set_requires_grad(true);
  Tensor z = add(mul(x, y), mul(x, x));  // dz/dx = y + 2x = 7, dz/dy = x = 2
  backward(z);
  CHECK(x.grad().item() == 7.0);
  CHECK(y.grad().item() == 2.0);
  CHECK(tape_size() == 0);
}

TEST_CASE("gradients accumulate across backward calls until zero_grad", "[tape]") {
  Tensor w = Tensor::from_vector(std::vector<double>{1.0, 2.0}, {2}).set_requires_grad(true);
  for (int i = 0; i < 3; ++i) backward(sum_all(scale(w, 2.0)));
  CHECK(w.grad().to_vector() == std::vector<double>{6.0, 6.0});
  w.zero_grad();
  CHECK_FALSE(w.grad().defined());
}

TEST_CASE("no-grad scope records nothing", "[tape]") {
  Tensor w = Tensor::full({3}, 1.0, DType::f64).set_requires_grad(true);
  {
    NoGradScope no_grad;
    Tensor y = mul(w, w);
    CHECK_FALSE(y.requires_grad());
    CHECK(tape_size() == 0);
  }
  Tensor y = mul(w, w);
  CHECK(y.requires_grad());
  CHECK(tape_size() == 1);
  clear_tape();
}

TEST_CASE("ops on tensors without requires_grad record nothing", "[tape]") {
  Tensor a = Tensor::full({3}, 2.0);
  Tensor b = softmax(mul(a, a));
  CHECK_FALSE(b.requires_grad());
  CHECK(tape_size() == 0);
}

TEST_CASE("backward releases saved activations and intermediate gradients", "[tape][allocator]") {
  CachingAllocator& alloc = allocator_for(Device::cpu());
  Tensor w = Tensor::full({256, 256}, 0.01).set_requires_grad(true);
  Tensor x = Tensor::full({64, 256}, 1.0);
  const size_t before = alloc.stats().bytes_in_use;
  {
    Tensor loss = mean_all(gelu(matmul(gelu(matmul(x, w)), w)));
    CHECK(alloc.stats().bytes_in_use > before);
    backward(loss);
  }
  // What remains is w's gradient alone (256*256 floats, rounded by the allocator).
  const size_t grad_bytes = CachingAllocator::round_size(256 * 256 * 4);
  CHECK(alloc.stats().bytes_in_use == before + grad_bytes);
  CHECK(tape_size() == 0);
}

TEST_CASE("leaf gradients are owned, never aliased between parameters", "[tape]") {
  Tensor a = Tensor::full({4}, 1.0, DType::f64).set_requires_grad(true);
  Tensor b = Tensor::full({4}, 2.0, DType::f64).set_requires_grad(true);
  backward(sum_all(add(a, b)));  // both receive the same upstream tensor
  CHECK_FALSE(a.grad().same_storage(b.grad()));
}

TEST_CASE("backward rejects a loss that is not a scalar or has no history", "[tape]") {
  Tensor w = Tensor::full({2}, 1.0).set_requires_grad(true);
  CHECK_THROWS_WITH(backward(mul(w, w)), Catch::Contains("exactly one element"));
  clear_tape();
  CHECK_THROWS_WITH(backward(Tensor::full({1}, 1.0)), Catch::Contains("does not depend"));
  CHECK_THROWS_WITH(mul(w, w).set_requires_grad(true), Catch::Contains("only leaf tensors"));
  clear_tape();
}

TEST_CASE("slice gradients: disjoint windows are copied, later overlaps on any axis still add", "[tape][slice]") {
  // h [2, 6] is an intermediate. Its column windows [0, 2) and [2, 6) land in a zero-filled
  // buffer (copied in, being disjoint); the row window, on another axis, must add on top.
  // Both recording orders give d/dh = column weight (1 or 2) + 5 on row 1.
  const std::vector<double> want{1, 1, 2, 2, 2, 2, 6, 6, 7, 7, 7, 7};
  for (bool rows_first : {false, true}) {
    INFO("row window recorded " << (rows_first ? "first" : "last"));
    Tensor x = Tensor::from_vector(std::vector<double>(12, 1.0), {2, 6}).set_requires_grad(true);
    Tensor h = scale(x, 1.0);
    auto rows = [&] { return sum_all(scale(slice(h, 0, 1, 2), 5.0)); };
    auto columns = [&] { return add(sum_all(slice(h, 1, 0, 2)), sum_all(scale(slice(h, 1, 2, 6), 2.0))); };
    Tensor loss;
    if (rows_first) {
      Tensor r = rows();
      loss = add(r, columns());
    } else {
      Tensor c = columns();
      loss = add(c, rows());
    }
    backward(loss);
    CHECK(x.grad().to_vector() == want);
  }
}

TEST_CASE("slice gradients: a full gradient between two disjoint windows ends the copying", "[tape][slice]") {
  // Backward runs newest first: the window [0, 2) lands in a fresh zero buffer, the full
  // gradient of sum(h) is added to all of it, and the window [4, 6) must then add, not copy,
  // although it overlaps no earlier window.
  Tensor x = Tensor::from_vector(std::vector<double>(6, 1.0), {6}).set_requires_grad(true);
  Tensor h = scale(x, 1.0);
  Tensor late = scale(sum_all(slice(h, 0, 4, 6)), 100.0);
  Tensor full = scale(sum_all(h), 10.0);
  Tensor early = sum_all(slice(h, 0, 0, 2));
  backward(add(add(late, full), early));
  CHECK(x.grad().to_vector() == std::vector<double>{11, 11, 10, 10, 110, 110});
}

TEST_CASE("slice gradients accumulate into windows in place, never into an adopted buffer", "[tape][slice]") {
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {6}).set_requires_grad(true);
  Tensor h = scale(x, 1.0);  // an intermediate: its first gradient is adopted from upstream
  Tensor other = add(h, h);  // a second consumer whose upstream gradient must stay intact
  Tensor loss = add(add(sum_all(other), sum_all(scale(slice(h, 0, 0, 4), 2.0))),
                    sum_all(scale(slice(h, 0, 2, 6), 3.0)));  // overlapping windows
  backward(loss);
  // d/dh: 2 (other) + 2 on [0, 4) + 3 on [2, 6)
  CHECK(x.grad().to_vector() == std::vector<double>{4, 4, 7, 7, 5, 5});
}
