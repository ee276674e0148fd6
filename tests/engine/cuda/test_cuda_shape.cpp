// reshape, permute, transpose, slice and concat on CUDA against the CPU. See compare.h for how a
// case compares.
#include <catch2/catch.hpp>

#include "tests/engine/cuda/compare.h"

using namespace engine;
using namespace engine::testing;

TEST_CASE("cuda reshape, permute, transpose, slice, concat", "[cuda][shape]") {
  for (DType dt : kFloatTypes) {
    Tensor x = rnd({2, 3, 4, 5}, 21, dt);
    compare("reshape", [](const Ins& in) { return Ins{reshape(in[0], {6, -1})}; }, {x});
    compare("permute", [](const Ins& in) { return Ins{permute(in[0], {2, 0, 3, 1}).contiguous()}; }, {x});
    compare("transpose+reshape", [](const Ins& in) { return Ins{reshape(transpose(in[0], 1, 3), {-1})}; }, {x});
    compare("slice", [](const Ins& in) { return Ins{slice(in[0], 2, 1, 3).contiguous(), slice(in[0], 0, 1, 2)}; }, {x});
    compare("concat",
            [](const Ins& in) {
              return Ins{concat({in[0], in[1]}, 1), concat({in[1], in[0]}, 0)};
            },
            {rnd({4, 3}, 22, dt), rnd({4, 3}, 23, dt)});
    compare("concat of views",
            [](const Ins& in) {
              return Ins{concat({transpose(in[0], 0, 1), slice(in[1], 0, 2, 7)}, 0)};
            },
            {rnd({6, 4}, 24, dt), rnd({9, 6}, 25, dt)});
  }
}
