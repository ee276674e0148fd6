// The CUDA caching allocator in a repeated training step. See compare.h for how a case compares.
#include <catch2/catch.hpp>

#include "tests/engine/cuda/compare.h"

using namespace engine;
using namespace engine::testing;

TEST_CASE("cuda caching allocator: a repeated step makes no new cudaMalloc", "[cuda][allocator]") {
  Generator gen(5);
  Tensor w = randn({64, 32}, gen, 0.0, 0.1, DType::f32, kGpu).set_requires_grad(true);
  Tensor x = randn({16, 8, 32}, gen, 0.0, 1.0, DType::f32, kGpu);
  Tensor targets = Tensor::full({16, 8}, 3, DType::i32, kGpu);
  auto step = [&] {
    Tensor h = rmsnorm(gelu(linear(x, w)), Tensor::full({64}, 1.0, DType::f32, kGpu));
    Tensor loss = cross_entropy(h, targets);
    backward(loss);
    w.zero_grad();
  };
  step();  // warm-up: fills the cache
  const size_t before = memory_stats(kGpu).raw_allocations;
  for (int i = 0; i < 5; ++i) step();
  const MemoryStats after = memory_stats(kGpu);
  CHECK(after.raw_allocations == before);
  CHECK(after.reuses > 0);
}
