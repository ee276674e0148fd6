// topk on CUDA against the CPU: ties, NaN and gradients. See compare.h for how a case compares.
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "tests/engine/cuda/compare.h"

using namespace engine;
using namespace engine::testing;

TEST_CASE("cuda topk: values, indices with ties and NaN, gradients", "[cuda][topk]") {
  for (DType dt : kFloatTypes) {
    // Rounded values make ties common: the lower index must win on both devices.
    Tensor x = rnd({6, 16}, 42, dt, 2.0);
    std::vector<double> rounded = x.to_vector();
    for (double& r : rounded) r = std::round(r);
    rounded[5] = NAN;
    Tensor tied = Tensor::from_vector(rounded, {6, 16}).to(dt);
    for (int64_t k : {1, 2, 4, 16})
      compare("topk k=" + std::to_string(k),
              [k](const Ins& in) {
                TopK t = topk(in[0], k);
                return Ins{t.values, t.indices};
              },
              {k == 16 ? x : tied});
    compare("topk nan row", [](const Ins& in) { return Ins{topk(in[0], 3).indices}; }, {tied});
  }
}
