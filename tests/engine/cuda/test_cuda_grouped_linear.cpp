// grouped_linear on CUDA (the MoE experts' grouped cuBLAS products) against the CPU. See compare.h
// for how a case compares.
#include <catch2/catch.hpp>
#include <vector>

#include "tests/engine/cuda/compare.h"

using namespace engine;
using namespace engine::testing;

TEST_CASE("cuda grouped_linear: empty groups, with and without bias, f32 f64 and bf16", "[cuda][grouped_linear]") {
  // Groups 0, 2 and 5 own no rows: no product, no gradient for their weights on either device.
  const std::vector<int64_t> offsets{0, 0, 3, 3, 10, 17, 17};
  auto with_bias = [offsets](const Ins& x) {
    return Ins{grouped_linear(x[0], offsets, Ins(x.begin() + 1, x.begin() + 7), Ins(x.begin() + 7, x.end()))};
  };
  auto without_bias = [offsets](const Ins& x) {
    return Ins{grouped_linear(x[0], offsets, Ins(x.begin() + 1, x.end()))};
  };
  auto inputs = [](DType dt) {
    Ins in{rnd({17, 12}, 1, dt)};
    for (int g = 0; g < 6; ++g) in.push_back(rnd({9, 12}, 10 + g, dt));
    for (int g = 0; g < 6; ++g) in.push_back(rnd({9}, 20 + g, dt));
    return in;
  };
  for (DType dt : kFloatTypes) {
    const Ins in = inputs(dt);
    const cuda::GroupedGemmCounts before = cuda::grouped_gemm_counts();
    compare("grouped_linear+bias", with_bias, in);
    compare("grouped_linear", without_bias, Ins(in.begin(), in.begin() + 7));
    // Forward, dX and dW of both cases went through the grouped cuBLAS call, not one by one.
    CHECK(cuda::grouped_gemm_counts().grouped_calls - before.grouped_calls >= 6);
    CHECK(cuda::grouped_gemm_counts().one_by_one == before.one_by_one);
  }
  if (cpu::bf16_matmul_supported()) {
    const Ins in = inputs(DType::f32);
    compare(
        "bf16 grouped_linear",
        [with_bias](const Ins& x) {
          MatmulPrecisionScope scope(MatmulPrecision::bf16);
          return with_bias(x);
        },
        in, 2e-3);
  }
}

TEST_CASE("cuda grouped_linear in bf16 over 64 experts: one grouped call where cuBLAS takes it",
          "[cuda][grouped_linear]") {
  // 64 experts of 8 rows each: f32 on the CPU against bf16 products on CUDA (bf16 multiplies,
  // f32 sums: within 1% of the largest output).
  const int64_t E = 64, rows = 8, in = 32, out = 16;
  std::vector<int64_t> offsets(E + 1);
  for (int64_t e = 0; e <= E; ++e) offsets[e] = e * rows;
  const Tensor x = rnd({E * rows, in}, 60, DType::f32);
  std::vector<Tensor> w_cpu, w_gpu;
  for (int64_t e = 0; e < E; ++e) {
    w_cpu.push_back(rnd({out, in}, 61 + static_cast<uint64_t>(e), DType::f32, 0.2));
    w_gpu.push_back(w_cpu.back().to(kGpu));
  }
  const Tensor expected = grouped_linear(x, offsets, w_cpu);
  const cuda::GroupedGemmCounts before = cuda::grouped_gemm_counts();
  Tensor got;
  {
    MatmulPrecisionScope scope(MatmulPrecision::bf16);
    got = grouped_linear(x.to(kGpu), offsets, w_gpu).to(kCpu);
  }
  require_match(expected, got, 1e-2, "bf16 grouped_linear, 64 experts");
  const cuda::GroupedGemmCounts after = cuda::grouped_gemm_counts();
  if (after.grouped_calls == before.grouped_calls + 1) {
    CHECK(after.one_by_one == before.one_by_one);
  } else {
    WARN("this cuBLAS refuses grouped GEMMs with bf16 multiplies: the 64 products ran one by one");
    CHECK(after.one_by_one == before.one_by_one + E);
  }
}
