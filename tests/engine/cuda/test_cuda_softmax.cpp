// softmax, log_softmax and logsumexp on CUDA against the CPU. See compare.h for how a case
// compares.
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "tests/engine/cuda/compare.h"

using namespace engine;
using namespace engine::testing;

TEST_CASE("cuda softmax, log_softmax, logsumexp", "[cuda][softmax]") {
  for (DType dt : kFloatTypes)
    for (const Shape& shape : {Shape{5, 7}, Shape{2, 3, 1000}, Shape{4, 1}}) {
      Tensor x = rnd(shape, 30, dt, 3.0);
      compare("softmax " + shape_str(shape), [](const Ins& in) { return Ins{softmax(in[0])}; }, {x});
      compare("log_softmax " + shape_str(shape), [](const Ins& in) { return Ins{log_softmax(in[0])}; }, {x});
      compare("logsumexp " + shape_str(shape), [](const Ins& in) { return Ins{logsumexp(in[0])}; }, {x});
    }
  // Large logits must not overflow; an all -inf row has logsumexp -inf on both devices.
  Tensor big = Tensor::from_vector(std::vector<float>{1000.f, 999.f, -1000.f, -INFINITY, -INFINITY, -INFINITY}, {2, 3});
  require_match(softmax(big), softmax(big.to(kGpu)).to(kCpu), 1e-6, "softmax of large logits");
  require_match(logsumexp(big), logsumexp(big.to(kGpu)).to(kCpu), 1e-6, "logsumexp with an all -inf row");
}
