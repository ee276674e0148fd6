// dropout on CUDA: the same mask as the CPU. See compare.h for how a case compares.
#include <catch2/catch.hpp>
#include <string>

#include "tests/engine/cuda/compare.h"

using namespace engine;
using namespace engine::testing;

TEST_CASE("cuda dropout drops the same elements as the CPU", "[cuda][dropout]") {
  for (DType dt : kFloatTypes)
    for (double p : {0.1, 0.5, 0.9})
      compare("dropout p=" + std::to_string(p),
              [p](const Ins& in) {
                Generator gen(77);
                Tensor first = dropout(in[0], p, gen);
                return Ins{first, dropout(in[0], p, gen)};  // the second draw uses a later offset
              },
              {rnd({5, 203}, 47, dt)});
}
