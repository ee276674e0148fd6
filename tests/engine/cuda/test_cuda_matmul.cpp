// matmul and linear on CUDA (cuBLAS, every transpose, bf16) against the CPU. See compare.h for how
// a case compares.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "tests/engine/cuda/compare.h"

using namespace engine;
using namespace engine::testing;

TEST_CASE("cuda matmul: 2-D, every transpose combination", "[cuda][matmul]") {
  for (DType dt : kFloatTypes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        const int64_t m = 7, k = 13, n = 5;
        Tensor a = rnd(ta ? Shape{k, m} : Shape{m, k}, 1, dt), b = rnd(tb ? Shape{n, k} : Shape{k, n}, 2, dt);
        compare("matmul ta=" + std::to_string(ta) + " tb=" + std::to_string(tb),
                [=](const Ins& x) { return Ins{matmul(x[0], x[1], ta, tb)}; }, {a, b});
      }
}

TEST_CASE("cuda matmul: batched 3-D, every transpose combination", "[cuda][matmul]") {
  for (DType dt : kFloatTypes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        const int64_t batch = 3, m = 6, k = 9, n = 4;
        Tensor a = rnd(ta ? Shape{batch, k, m} : Shape{batch, m, k}, 3, dt);
        Tensor b = rnd(tb ? Shape{batch, n, k} : Shape{batch, k, n}, 4, dt);
        compare("bmm ta=" + std::to_string(ta) + " tb=" + std::to_string(tb),
                [=](const Ins& x) { return Ins{matmul(x[0], x[1], ta, tb)}; }, {a, b});
      }
}

TEST_CASE("cuda matmul: N-D @ 2-D, k = 0 and empty shapes", "[cuda][matmul]") {
  for (DType dt : kFloatTypes) {
    compare("matmul nd", [](const Ins& x) { return Ins{matmul(x[0], x[1], false, true)}; },
            {rnd({2, 3, 8}, 5, dt), rnd({6, 8}, 6, dt)});
    Tensor zero_k = matmul(Tensor::empty({4, 0}, dt, kGpu), Tensor::empty({0, 3}, dt, kGpu));
    CHECK(zero_k.to_vector() == std::vector<double>(12, 0.0));
    Tensor no_rows = matmul(Tensor::empty({0, 5}, dt, kGpu), rnd({5, 3}, 7, dt).to(kGpu));
    CHECK(no_rows.shape() == Shape{0, 3});
  }
}

TEST_CASE("cuda linear: with and without bias", "[cuda][matmul][linear]") {
  for (DType dt : kFloatTypes) {
    Tensor x = rnd({2, 5, 16}, 8, dt), w = rnd({12, 16}, 9, dt), bias = rnd({12}, 10, dt);
    compare("linear+bias", [](const Ins& in) { return Ins{linear(in[0], in[1], in[2])}; }, {x, w, bias});
    compare("linear", [](const Ins& in) { return Ins{linear(in[0], in[1])}; }, {x, w});
  }
}

TEST_CASE("cuda matmul and linear in bf16 (CUBLAS_COMPUTE_32F_FAST_16BF) match the CPU's bf16",
          "[cuda][matmul][bf16]") {
  std::string why;
  if (!cpu::bf16_matmul_supported(&why)) {
    WARN("skipped: the CPU side has no bf16 matmul: " << why);
    return;
  }
  // Both round the operands to bf16 and sum in f32; forward and backward run in bf16.
  auto in_bf16 = [](const Fn& f) {
    return [f](const Ins& x) {
      MatmulPrecisionScope scope(MatmulPrecision::bf16);
      return f(x);
    };
  };
  compare("bf16 matmul", in_bf16([](const Ins& x) { return Ins{matmul(x[0], x[1], false, true)}; }),
          {rnd({37, 64}, 11, DType::f32), rnd({24, 64}, 12, DType::f32)}, 2e-3);
  compare("bf16 linear", in_bf16([](const Ins& x) { return Ins{linear(x[0], x[1], x[2])}; }),
          {rnd({3, 11, 32}, 13, DType::f32), rnd({20, 32}, 14, DType::f32), rnd({20}, 15, DType::f32)}, 2e-3);
}
