// layernorm and rmsnorm on CUDA against the CPU. See compare.h for how a case compares.
#include <catch2/catch.hpp>

#include "tests/engine/cuda/compare.h"

using namespace engine;
using namespace engine::testing;

TEST_CASE("cuda layernorm and rmsnorm", "[cuda][norm]") {
  for (DType dt : kFloatTypes)
    for (int64_t n : {8, 300}) {
      // An offset mean tests the two-pass variance.
      Tensor x = add_scalar(rnd({2, 3, n}, 31, dt, 2.0), 5.0), gamma = rnd({n}, 32, dt), beta = rnd({n}, 33, dt);
      compare("layernorm", [](const Ins& in) { return Ins{layernorm(in[0], in[1], in[2])}; }, {x, gamma, beta});
      compare("layernorm no shift", [](const Ins& in) { return Ins{layernorm(in[0], in[1], Tensor())}; }, {x, gamma});
      compare("rmsnorm", [](const Ins& in) { return Ins{rmsnorm(in[0], in[1])}; }, {x, gamma});
    }
}
