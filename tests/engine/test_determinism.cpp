// Same seed and thread count => bit-identical results, run to run, for a small model's forward
// and backward.
#include <catch2/catch.hpp>

#include "tests/support/gradcheck.h"

using namespace engine;

namespace {
// A two-layer attention + MLP block, forward and backward, returning loss and all gradients.
std::vector<double> run_once(uint64_t seed) {
  Generator gen(seed);
  const int64_t B = 2, H = 2, T = 16, D = 8, C = H * D, V = 32;
  Tensor emb = randn({V, C}, gen, 0, 0.1).set_requires_grad(true);
  Tensor wqkv = randn({3 * C, C}, gen, 0, 0.1).set_requires_grad(true);
  Tensor w1 = randn({4 * C, C}, gen, 0, 0.1).set_requires_grad(true);
  Tensor w2 = randn({C, 4 * C}, gen, 0, 0.1).set_requires_grad(true);
  Tensor gamma = Tensor::full({C}, 1.0).set_requires_grad(true);
  std::vector<int32_t> ids(B * T), tgt(B * T);
  for (int i = 0; i < B * T; ++i) ids[i] = (i * 7 + 3) % V, tgt[i] = (i * 5 + 1) % V;
  Tensor x = embedding(emb, Tensor::from_vector(ids, {B, T}));
  Tensor qkv = linear(layernorm(x, gamma, Tensor()), wqkv);
  auto heads = [&](int i) { return permute(reshape(slice(qkv, 2, i * C, (i + 1) * C), {B, T, H, D}), {0, 2, 1, 3}); };
  Tensor att = reshape(permute(causal_attention(heads(0), heads(1), heads(2)), {0, 2, 1, 3}), {B, T, C});
  x = add(x, att);
  Tensor r = rmsnorm(x, gamma);
  x = add(x, linear(gelu(linear(r, w1)), w2));
  Generator drop_gen(seed + 1);
  x = dropout(x, 0.1, drop_gen);
  Tensor logits = matmul(x, emb, false, true);
  Tensor loss = cross_entropy(logits, Tensor::from_vector(tgt, {B, T}));
  backward(loss);
  std::vector<double> out{loss.item()};
  for (const Tensor& p : {emb, wqkv, w1, w2, gamma})
    for (double v : p.grad().to_vector()) out.push_back(v);
  return out;
}
}  // namespace

TEST_CASE("forward and backward are bit-identical run to run", "[determinism]") {
  const auto first = run_once(3);
  for (int run = 0; run < 3; ++run) REQUIRE(run_once(3) == first);
  CHECK(run_once(4) != first);
}
