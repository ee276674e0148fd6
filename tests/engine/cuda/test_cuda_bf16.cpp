// bf16 activations on CUDA against the same ops on the CPU (whose bf16 results
// tests/engine/test_ops_bf16.cpp checks against f64). Outputs are cast to f32 for the shared
// comparison; the tolerance is a few bf16 units (2^-8), since the devices sum in different
// orders and one rounding more or less moves a value by one unit.
#include <catch2/catch.hpp>
#include <vector>

#include "tests/engine/cuda/compare.h"

using namespace engine;
using namespace engine::testing;

namespace {
constexpr double kTol = 4.0 / 256;
Tensor act(const Shape& s, uint64_t seed, double std = 1.0) { return rnd(s, seed, DType::f32, std).to(DType::bf16); }
Tensor param(const Shape& s, uint64_t seed, double std = 1.0) { return rnd(s, seed, DType::f32, std); }
Ins as_f32(const Tensor& t) { return Ins{t.to(DType::f32)}; }
}  // namespace

TEST_CASE("cuda bf16: elementwise ops and dropout", "[cuda][bf16]") {
  const Shape s{33, 70};
  compare(
      "add", [](const Ins& x) { return as_f32(add(x[0], x[1])); }, {act(s, 1), act(s, 2)}, kTol);
  compare(
      "mul row", [](const Ins& x) { return as_f32(mul(x[0], x[1])); }, {act(s, 3), act({70}, 4)}, kTol);
  compare(
      "affine", [](const Ins& x) { return as_f32(affine(x[0], 0.3, 1.0)); }, {act(s, 5)}, kTol);
  compare(
      "gelu", [](const Ins& x) { return as_f32(gelu(x[0])); }, {act(s, 6, 2.0)}, kTol);
  compare(
      "swiglu", [](const Ins& x) { return as_f32(swiglu(x[0], x[1])); }, {act(s, 7), act(s, 8)}, kTol);
  compare(
      "dropout",
      [](const Ins& x) {
        Generator gen(3);
        return as_f32(dropout(x[0], 0.25, gen, true));
      },
      {act(s, 9)}, kTol);
  compare(
      "sum over rows (f32 out)", [](const Ins& x) { return Ins{sum(x[0], 0)}; }, {act({300, 20}, 10)}, kTol);
}

TEST_CASE("cuda bf16: norms with f32 scale and shift", "[cuda][bf16][norm]") {
  compare(
      "layernorm", [](const Ins& x) { return as_f32(layernorm(x[0], x[1], x[2], 1e-5)); },
      {act({17, 96}, 11, 3.0), param({96}, 12), param({96}, 13)}, kTol);
  compare(
      "rmsnorm", [](const Ins& x) { return as_f32(rmsnorm(x[0], x[1], 1e-5)); },
      {act({17, 96}, 14, 3.0), param({96}, 15)}, kTol);
}

TEST_CASE("cuda bf16: products with f32 weights and attention", "[cuda][bf16][matmul][attention]") {
  compare(
      "linear", [](const Ins& x) { return as_f32(linear(x[0], x[1], x[2])); },
      {act({2, 9, 32}, 16), param({24, 32}, 17, 0.2), param({24}, 18)}, kTol);
  compare(
      "tied head", [](const Ins& x) { return as_f32(matmul(x[0], x[1], false, true)); },
      {act({2, 9, 32}, 19), param({40, 32}, 20)}, kTol);
  const std::vector<int64_t> offsets{0, 5, 5, 19};
  compare(
      "grouped_linear",
      [&](const Ins& x) {
        return as_f32(grouped_linear(x[0], offsets, {x[1], x[2], x[3]}, {x[4], x[5], x[6]}));
      },
      {act({19, 16}, 21), param({12, 16}, 22, 0.3), param({12, 16}, 23, 0.3), param({12, 16}, 24, 0.3), param({12}, 25),
       param({12}, 26), param({12}, 27)},
      kTol);
  compare(
      "causal_attention", [](const Ins& x) { return as_f32(causal_attention(x[0], x[1], x[2])); },
      {act({2, 2, 21, 8}, 28), act({2, 2, 21, 8}, 29), act({2, 2, 21, 8}, 30)}, kTol);
}

TEST_CASE("cuda bf16: cross-entropy and the MoE row ops", "[cuda][bf16][cross_entropy][gather_scatter]") {
  compare(
      "cross_entropy (f32 loss)", [](const Ins& x) { return Ins{cross_entropy(x[0], x[1])}; },
      {act({12, 50}, 31, 3.0), ints({3, 7, 0, 49, 12, 5, 5, 9, 1, 2, 40, 33})}, kTol);
  const Tensor index = ints({2, 0, 2, 5, 1, 0});
  compare(
      "gather_rows", [&](const Ins& x) { return as_f32(gather_rows(x[0], x[1])); }, {act({6, 24}, 32), index}, kTol);
  compare(
      "scatter_add_rows with f32 gates", [&](const Ins& x) { return as_f32(scatter_add_rows(x[0], x[1], 6, x[2])); },
      {act({6, 24}, 33), index, param({6}, 34)}, kTol);
}
