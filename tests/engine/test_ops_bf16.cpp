// Every op that takes bf16 activations, against its f64 result.
//
// Each case runs an op twice: on bf16 inputs (with f32 for what stays f32 under bf16 training:
// weights, biases, norm scales, gates) and on f64 copies of exactly those input values. The
// outputs and the gradients of every input (through a fixed random projection of the output)
// must agree within `ulps` bf16 units (2^-8) of the reference's largest magnitude: the error
// bf16 storage and rounded product operands justify, where a wrong formula errs by O(1). The
// cases also check the types training relies on: bf16 out, a bf16 input's gradient in bf16, an
// f32 parameter's gradient in f32.
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "tests/support/gradcheck.h"

using namespace engine;
using engine::testing::bf16_available;
using engine::testing::random_tensor;

namespace {

constexpr double kBf16Unit = 1.0 / 256.0;  // 2^-8: bf16's relative spacing

struct Input {
  Shape shape;
  DType low;  // bf16 (an activation) or f32 (a parameter, a gate)
  double std = 1.0;
  bool differentiable = true;
};

using Op = std::function<Tensor(const std::vector<Tensor>&)>;

// max |a - ref| / max |ref|, both read as double.
double scaled_error(const Tensor& actual, const Tensor& reference) {
  const std::vector<double> a = actual.to_vector(), r = reference.to_vector();
  REQUIRE(a.size() == r.size());
  double err = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    err = std::max(err, std::abs(a[i] - r[i]));
    scale = std::max(scale, std::abs(r[i]));
  }
  return scale > 0 ? err / scale : err;
}

void check_against_f64(const std::string& name, const std::vector<Input>& inputs, const Op& op, double ulps,
                       DType out_low = DType::bf16) {
  INFO(name);
  std::vector<Tensor> low, exact;
  uint64_t seed = 1000;
  for (const Input& in : inputs) {
    Tensor base = random_tensor(in.shape, seed++, in.std, DType::f32);
    Tensor l = base.to(in.low);
    Tensor e = l.to(DType::f64);  // the very values the low-precision op reads
    if (in.differentiable) {
      l.set_requires_grad(true);
      e.set_requires_grad(true);
    }
    low.push_back(l);
    exact.push_back(e);
  }
  // One forward and backward at a time: backward() runs (and clears) the whole tape.
  Tensor y_low = op(low);
  // bf16-exact, so that the gradient reaching the op is the same in both runs.
  const Tensor projection = random_tensor(y_low.shape(), 99, 1.0, DType::f32).to(DType::bf16).to(DType::f64);
  backward(sum_all(mul(y_low.to(DType::f32), projection.to(DType::f32))));
  Tensor y_exact = op(exact);
  backward(sum_all(mul(y_exact, projection)));
  CHECK(y_low.dtype() == out_low);
  CHECK(y_exact.dtype() == DType::f64);
  CHECK(scaled_error(y_low, y_exact) <= ulps * kBf16Unit);
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].differentiable) continue;
    INFO("gradient of input " << i);
    if (!exact[i].grad().defined()) {  // an input the output does not depend on (an idle expert)
      CHECK_FALSE(low[i].grad().defined());
      continue;
    }
    REQUIRE(low[i].grad().defined());
    CHECK(low[i].grad().dtype() == inputs[i].low);
    CHECK(scaled_error(low[i].grad(), exact[i].grad()) <= ulps * kBf16Unit);
  }
}

Tensor i32(const std::vector<int32_t>& v) { return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}); }

}  // namespace

TEST_CASE("bf16 storage rounds to nearest even and keeps NaN and infinity", "[bf16]") {
  Tensor x = Tensor::from_vector(
      std::vector<float>{1.0f, 1.0f + 1.0f / 256, 1.0f + 3.0f / 256, 1.0f + 1.0f / 512, -2.5f, INFINITY, NAN, 3.0e38f},
      {8});
  const std::vector<double> r = x.to(DType::bf16).to_vector();
  CHECK(r[0] == 1.0);
  CHECK(r[1] == 1.0);              // a tie: to the even neighbour 1
  CHECK(r[2] == 1.0 + 4.0 / 256);  // a tie: up to the even neighbour 1 + 2/128
  CHECK(r[3] == 1.0);              // below half a unit
  CHECK(r[4] == -2.5);
  CHECK(std::isinf(r[5]));
  CHECK(std::isnan(r[6]));
  CHECK(std::abs(r[7] - 3.0e38) < 3.0e38 * kBf16Unit);
  CHECK(dtype_size(DType::bf16) == 2);
  CHECK_THROWS_WITH(topk(x.to(DType::bf16), 2), Catch::Contains("unsupported element type bf16"));
}

TEST_CASE("bf16 elementwise ops against f64", "[bf16][binary][activation]") {
  const Shape s{37, 65};
  check_against_f64(
      "add", {{s, DType::bf16}, {s, DType::bf16}}, [](auto& x) { return add(x[0], x[1]); }, 1);
  check_against_f64(
      "mul with a broadcast row", {{s, DType::bf16}, {{65}, DType::bf16}}, [](auto& x) { return mul(x[0], x[1]); }, 1);
  check_against_f64(
      "div", {{s, DType::bf16}, {s, DType::bf16, 0.2}}, [](auto& x) { return div(x[0], affine(x[1], 1.0, 3.0)); }, 3);
  check_against_f64(
      "affine", {{s, DType::bf16}}, [](auto& x) { return affine(x[0], 1.0 / 3.0, 0.25); }, 1);
  check_against_f64(
      "gelu", {{s, DType::bf16, 2.0}}, [](auto& x) { return gelu(x[0]); }, 2);
  check_against_f64(
      "silu", {{s, DType::bf16, 2.0}}, [](auto& x) { return silu(x[0]); }, 2);
  check_against_f64(
      "swiglu", {{s, DType::bf16}, {s, DType::bf16}}, [](auto& x) { return swiglu(x[0], x[1]); }, 2);
  check_against_f64(
      "dropout", {{s, DType::bf16}},
      [](auto& x) {
        Generator gen(5);
        return dropout(x[0], 0.3, gen, true);
      },
      2);
  check_against_f64(
      "cast to f32 and back", {{s, DType::bf16}},
      [](auto& x) { return x[0].dtype() == DType::bf16 ? x[0].to(DType::f32).to(DType::bf16) : x[0]; }, 0);
}

TEST_CASE("bf16 shape ops and reductions against f64", "[bf16][shape][reduce]") {
  const Shape s{4, 6, 10};
  check_against_f64(
      "permute, slice and concat", {{s, DType::bf16}},
      [](auto& x) {
        Tensor p = permute(x[0], {1, 0, 2});
        return concat({slice(p, 2, 5, 10), slice(p, 2, 0, 5)}, 2).contiguous();
      },
      0);
  // A bf16 sum accumulates, and is returned, in f32.
  check_against_f64(
      "sum over rows", {{{300, 17}, DType::bf16}}, [](auto& x) { return sum(x[0], 0); }, 0.01, DType::f32);
}

TEST_CASE("bf16 norms against f64 with f32 scale and shift", "[bf16][norm]") {
  const Shape s{33, 96};
  check_against_f64(
      "layernorm", {{s, DType::bf16, 3.0}, {{96}, DType::f32}, {{96}, DType::f32}},
      [](auto& x) { return layernorm(x[0], x[1], x[2], 1e-5); }, 2);
  check_against_f64(
      "rmsnorm", {{s, DType::bf16, 3.0}, {{96}, DType::f32}}, [](auto& x) { return rmsnorm(x[0], x[1], 1e-5); }, 2);
  Tensor x = random_tensor(s, 1, 1.0, DType::f32).to(DType::bf16);
  CHECK_THROWS_WITH(rmsnorm(x, Tensor::full({96}, 1.0, DType::bf16), 1e-5), Catch::Contains("must be f32"));
}

TEST_CASE("bf16 products with f32 weights against f64", "[bf16][matmul][grouped_linear]") {
  if (!bf16_available()) return;
  check_against_f64(
      "linear", {{{2, 40, 64}, DType::bf16}, {{48, 64}, DType::f32, 0.1}, {{48}, DType::f32}},
      [](auto& x) { return linear(x[0], x[1], x[2]); }, 2);
  check_against_f64(
      "tied head: bf16 rows @ f32 table^T", {{{3, 20, 32}, DType::bf16}, {{50, 32}, DType::f32}},
      [](auto& x) { return matmul(x[0], x[1], false, true); }, 2);
  check_against_f64(
      "batched bf16 matmul", {{{3, 20, 32}, DType::bf16}, {{3, 32, 24}, DType::bf16}},
      [](auto& x) { return matmul(x[0], x[1]); }, 2);
  const std::vector<int64_t> offsets{0, 7, 7, 30, 41};
  check_against_f64(
      "grouped_linear over 4 experts (one idle)",
      {{{41, 32}, DType::bf16},
       {{24, 32}, DType::f32, 0.2},
       {{24, 32}, DType::f32, 0.2},
       {{24, 32}, DType::f32, 0.2},
       {{24, 32}, DType::f32, 0.2},
       {{24}, DType::f32},
       {{24}, DType::f32},
       {{24}, DType::f32},
       {{24}, DType::f32}},
      [&](auto& x) {
        return grouped_linear(x[0], offsets, {x[1], x[2], x[3], x[4]}, {x[5], x[6], x[7], x[8]});
      },
      2);
}

TEST_CASE("bf16 causal attention against f64", "[bf16][attention]") {
  if (!bf16_available()) return;
  const Shape s{2, 3, 40, 16};
  check_against_f64(
      "causal_attention", {{s, DType::bf16}, {s, DType::bf16}, {s, DType::bf16}},
      [](auto& x) { return causal_attention(x[0], x[1], x[2]); }, 3);
}

TEST_CASE("bf16 logits in cross-entropy against f64", "[bf16][cross_entropy]") {
  std::vector<int32_t> targets;
  for (int i = 0; i < 60; ++i) targets.push_back((i * 37) % 300);
  targets[5] = -100;  // ignored
  const Tensor t = Tensor::from_vector(targets, {6, 10});
  // The loss is f32 (computed in f32 from the bf16 logits); d logits is bf16.
  check_against_f64(
      "cross_entropy", {{{6, 10, 300}, DType::bf16, 3.0}}, [&](auto& x) { return cross_entropy(x[0], t); }, 1,
      DType::f32);
}

TEST_CASE("bf16 rows: dispatch gather and gated combine against f64", "[bf16][gather_scatter]") {
  const Tensor index = i32({3, 0, 3, 7, 1, 0, 5, 2, 3, 6});
  // Exact forward; the gradient sums repeated rows (index 3 thrice) and rounds once.
  check_against_f64(
      "gather_rows", {{{8, 24}, DType::bf16}}, [&](auto& x) { return gather_rows(x[0], index); }, 1);
  // Gates stay f32; a token's rows are summed in f32 and rounded once.
  check_against_f64(
      "scatter_add_rows with f32 gates", {{{10, 24}, DType::bf16}, {{10}, DType::f32}},
      [&](auto& x) { return scatter_add_rows(x[0], index, 8, x[1]); }, 1);
  Tensor rows = random_tensor({10, 24}, 3, 1.0, DType::f32).to(DType::bf16);
  CHECK_THROWS_WITH(scatter_add_rows(rows, index, 8, Tensor::full({10}, 0.5, DType::bf16)),
                    Catch::Contains("must be f32"));
}

TEST_CASE("products refuse type pairs other than bf16 activations with f32 weights", "[bf16][matmul][grouped_linear]") {
  const Tensor x64 = random_tensor({4, 8}, 1, 1.0, DType::f64);
  const Tensor w32 = random_tensor({6, 8}, 2, 1.0, DType::f32);
  const Tensor xb = random_tensor({4, 8}, 3, 1.0, DType::f32).to(DType::bf16);
  CHECK_THROWS_WITH(linear(x64, w32), Catch::Contains("must share a type, or be bf16 activations with f32 weights"));
  CHECK_THROWS_WITH(linear(xb, w32, Tensor::zeros({6}, DType::f64)),
                    Catch::Contains("must have the weight's type f32"));
  CHECK_THROWS_WITH(matmul(x64, xb, false, true),
                    Catch::Contains("operands must share a floating type (or be bf16 and f32)"));
  CHECK_THROWS_WITH(grouped_linear(xb, {0, 4}, {w32.to(DType::bf16)}),
                    Catch::Contains("be f32 and on the input's device"));
}
