// CPU-vs-CUDA at real sizes: shapes that cross the launch boundaries the small cases never
// reach. Grid-stride loops that wrap (more elements than 16 blocks per SM of 256 threads),
// row kernels whose blocks handle several rows (more rows than 64 blocks per SM) and more
// than 65,535 rows, top-k over 64 and 256 experts, cross-entropy over GPT-2's 50,257-token
// vocabulary, attention at T = 1024, and column sums (bias and norm-weight gradients) over
// 70,000 rows. Tagged [large]: the GPU check runs them, but not under compute-sanitizer.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "tests/engine/cuda/compare.h"

using namespace engine;
using namespace engine::testing;

namespace {
constexpr int64_t kManyRows = 70000;  // > 65,535 (one grid dimension) and > 64 blocks per SM
}

TEST_CASE("cuda large: elementwise grid-stride loops wrap", "[cuda][large]") {
  const Tensor a = rnd({3000, 2000}, 101, DType::f32), b = rnd({3000, 2000}, 102, DType::f32);
  compare("add 6M", [](const Ins& in) { return Ins{add(mul(in[0], in[1]), in[0])}; }, {a, b});
  compare("gelu 6M", [](const Ins& in) { return Ins{gelu(in[0])}; }, {a});
  // One row of 6M elements: the whole-tensor sum, split into chunks across the device.
  compare("sum of all 6M", [](const Ins& in) { return Ins{sum(reshape(in[0], {-1}), 0)}; }, {a});
  compare("sum_squares of 6M", [](const Ins& in) { return Ins{sum_squares(in[0])}; }, {a});
}

TEST_CASE("cuda large: row kernels over more than 65535 rows", "[cuda][large]") {
  const Tensor x = rnd({kManyRows, 24}, 103, DType::f32);
  const Tensor gamma = rnd({24}, 104, DType::f32), beta = rnd({24}, 105, DType::f32);
  compare("softmax", [](const Ins& in) { return Ins{softmax(in[0])}; }, {x});
  compare("layernorm", [](const Ins& in) { return Ins{layernorm(in[0], in[1], in[2])}; }, {x, gamma, beta});
  compare("rmsnorm", [](const Ins& in) { return Ins{rmsnorm(in[0], in[1])}; }, {x, gamma});
  compare("sum over the middle axis",
          [](const Ins& in) {
            return Ins{sum(reshape(in[0], {kManyRows, 4, 6}), 1)};
          },
          {x});
  compare("sum over rows", [](const Ins& in) { return Ins{sum(in[0], 0)}; }, {x});
}

TEST_CASE("cuda large: linear bias gradient over many rows", "[cuda][large]") {
  const Tensor x = rnd({kManyRows, 32}, 106, DType::f32), w = rnd({48, 32}, 107, DType::f32, 0.2),
               b = rnd({48}, 108, DType::f32);
  compare(
      "linear", [](const Ins& in) { return Ins{linear(in[0], in[1], in[2])}; }, {x, w, b}, 1e-4);
}

TEST_CASE("cuda large: gather and scatter of more than 65535 rows", "[cuda][large]") {
  std::vector<int32_t> index(kManyRows);
  for (int64_t i = 0; i < kManyRows; ++i) index[i] = static_cast<int32_t>((i * 7919) % 5000);
  const Tensor table = rnd({5000, 16}, 109, DType::f32), rows = rnd({kManyRows, 16}, 110, DType::f32);
  compare("gather_rows", [](const Ins& in) { return Ins{gather_rows(in[0], in[1])}; }, {table, ints(index)});
  compare(
      "scatter_add_rows", [](const Ins& in) { return Ins{scatter_add_rows(in[0], in[1], 5000)}; }, {rows, ints(index)},
      1e-4);
}

TEST_CASE("cuda large: top-k over 64 and 256 experts", "[cuda][large][topk]") {
  for (int64_t experts : {64, 256}) {
    const Tensor logits = rnd({4096, experts}, 111 + static_cast<uint64_t>(experts), DType::f32);
    for (int64_t k : {1, 2, 8}) {
      compare("topk E=" + std::to_string(experts) + " k=" + std::to_string(k),
              [k](const Ins& in) {
                TopK t = topk(in[0], k);
                return Ins{t.values, t.indices};
              },
              {logits});
    }
  }
}

TEST_CASE("cuda large: cross-entropy over a 50257-token vocabulary", "[cuda][large][cross_entropy]") {
  const int64_t vocab = 50257;
  const Tensor logits = rnd({2, 48, vocab}, 120, DType::f32, 2.0);
  std::vector<int32_t> t(96);
  for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<int32_t>((i * 104729) % vocab);
  t[5] = -100;
  compare("cross_entropy", [](const Ins& in) { return Ins{cross_entropy(in[0], in[1])}; },
          {logits, Tensor::from_vector(t, {2, 48})}, 0.0, {true, false});
}

TEST_CASE("cuda large: causal attention at T = 1024", "[cuda][large][attention]") {
  const Tensor q = rnd({1, 2, 1024, 64}, 121, DType::f32), k = rnd({1, 2, 1024, 64}, 122, DType::f32),
               v = rnd({1, 2, 1024, 64}, 123, DType::f32);
  compare("attention T=1024", [](const Ins& in) { return Ins{causal_attention(in[0], in[1], in[2])}; }, {q, k, v});
}
