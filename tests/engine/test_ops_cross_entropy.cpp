// Fused cross-entropy: values against log_softmax, ignore_index, bad targets, gradients.
#include <catch2/catch.hpp>
#include <cmath>

#include "tests/support/gradcheck.h"

using namespace engine;
using engine::testing::random_tensor;

TEST_CASE("cross_entropy equals the mean negative log-likelihood over counted targets", "[cross_entropy]") {
  Tensor logits = random_tensor({2, 3, 5}, 1, 3.0);
  Tensor targets = Tensor::from_vector(std::vector<int32_t>{4, -100, 0, 2, 2, -100}, {2, 3});
  const auto lp = log_softmax(logits).to_vector();
  const double expected = -(lp[0 * 5 + 4] + lp[2 * 5 + 0] + lp[3 * 5 + 2] + lp[4 * 5 + 2]) / 4.0;
  CHECK(cross_entropy(logits, targets).item() == Approx(expected).epsilon(1e-12));
  // A custom ignore_index; -100 is then an error.
  Tensor t2 = Tensor::from_vector(std::vector<int32_t>{4, 1, 0, 2, 2, 1}, {2, 3});
  CHECK(cross_entropy(logits, t2, 1).item() == Approx(expected).epsilon(1e-12));
  CHECK_THROWS_WITH(cross_entropy(logits, targets, 1), Catch::Contains("target -100 at row 1 is outside [0, 5)"));
}

TEST_CASE("cross_entropy: all targets ignored gives 0 and a zero gradient", "[cross_entropy]") {
  Tensor logits = random_tensor({2, 4}, 2).set_requires_grad(true);
  Tensor loss = cross_entropy(logits, Tensor::full({2}, -100.0, DType::i32));
  CHECK(loss.item() == 0.0);
  backward(loss);
  for (double g : logits.grad().to_vector()) CHECK(g == 0.0);
}

TEST_CASE("cross_entropy: gradients", "[cross_entropy][gradcheck]") {
  Tensor targets = Tensor::from_vector(std::vector<int32_t>{3, 0, -100, 1}, {4});
  REQUIRE_GRADCHECK([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], targets); },
                    std::vector<Tensor>({random_tensor({4, 5}, 3, 2.0)}));
  Tensor t1 = Tensor::from_vector(std::vector<int32_t>{0}, {1});
  REQUIRE_GRADCHECK([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], t1); },
                    std::vector<Tensor>({random_tensor({1, 1}, 4)}));
}

TEST_CASE("cross_entropy rejects mismatched inputs", "[cross_entropy]") {
  Tensor logits = Tensor::zeros({3, 4});
  CHECK_THROWS_WITH(cross_entropy(logits, Tensor::zeros({4}, DType::i32)), Catch::Contains("without the last axis"));
  CHECK_THROWS_WITH(cross_entropy(logits, Tensor::zeros({3})), Catch::Contains("targets must be i32"));
}
