// gather_rows, scatter_add_rows and embedding on CUDA against the CPU. See compare.h for how a case
// compares.
#include <catch2/catch.hpp>
#include <vector>

#include "tests/engine/cuda/compare.h"

using namespace engine;
using namespace engine::testing;

TEST_CASE("cuda gather_rows, scatter_add_rows, embedding", "[cuda][gather_scatter]") {
  for (DType dt : kFloatTypes) {
    Tensor x = rnd({7, 5}, 43, dt), index = ints({6, 0, 3, 3, 1, 6, 6, 2});
    compare("gather_rows", [](const Ins& in) { return Ins{gather_rows(in[0], in[1])}; }, {x, index});
    Tensor src = rnd({8, 5}, 44, dt), weight = rnd({8}, 45, dt);
    // Repeated indices collide: the atomics' order may differ from the CPU's, within rounding.
    compare("scatter_add_rows", [](const Ins& in) { return Ins{scatter_add_rows(in[0], in[1], 9)}; }, {src, index});
    compare("scatter_add_rows weighted", [](const Ins& in) { return Ins{scatter_add_rows(in[0], in[1], 9, in[2])}; },
            {src, index, weight});
    Tensor table = rnd({10, 6}, 46, dt);
    Tensor ids = Tensor::from_vector(std::vector<int32_t>{9, 0, 4, 4, 2, 7}, {2, 3});
    compare("embedding", [](const Ins& in) { return Ins{embedding(in[0], in[1])}; }, {table, ids});
  }
  Tensor int_rows = Tensor::from_vector(std::vector<int32_t>{1, 2, 3, 4, 5, 6}, {3, 2});
  CHECK(gather_rows(int_rows.to(kGpu), ints({2, 0}).to(kGpu)).to(kCpu).to_int_vector() ==
        std::vector<int32_t>{5, 6, 1, 2});
}
