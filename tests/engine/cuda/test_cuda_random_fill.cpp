// randn and rand_uniform on CUDA: the CPU's numbers from the same Philox stream. See compare.h for
// how a case compares.
#include <catch2/catch.hpp>

#include "tests/engine/cuda/compare.h"

using namespace engine;
using namespace engine::testing;

TEST_CASE("cuda randn and rand_uniform give the CPU's numbers", "[cuda][random]") {
  for (DType dt : kFloatTypes) {
    Generator cpu_gen(123), gpu_gen(123);
    for (int draw = 0; draw < 3; ++draw) {
      Tensor a = randn({1001}, cpu_gen, 0.5, 2.0, dt), b = randn({1001}, gpu_gen, 0.5, 2.0, dt, kGpu);
      require_match(a, b.to(kCpu), dt == DType::f64 ? 1e-14 : 1e-6, "randn");
      Tensor c = rand_uniform({999}, cpu_gen, -1.0, 3.0, dt), e = rand_uniform({999}, gpu_gen, -1.0, 3.0, dt, kGpu);
      require_match(c, e.to(kCpu), dt == DType::f64 ? 1e-14 : 1e-7, "rand_uniform");
    }
    CHECK(cpu_gen.offset() == gpu_gen.offset());
  }
}
