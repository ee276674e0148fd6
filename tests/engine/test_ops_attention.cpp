// Causal attention: forward values against a naive reference that materializes the scores,
// causality, gradients of q, k and v (f64 finite differences), f32 against f64, and input
// checks.
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "tests/support/gradcheck.h"

using namespace engine;
using engine::testing::max_abs_diff;
using engine::testing::random_tensor;

namespace {

// softmax(q k^T * scale + causal mask) v, in plain double loops over [B, H, T, D].
Tensor reference_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale) {
  const Shape& s = q.shape();
  const int64_t heads = s[0] * s[1], T = s[2], D = s[3];
  if (scale == 0.0) scale = 1.0 / std::sqrt(static_cast<double>(D));
  const std::vector<double> pq = q.to_vector(), pk = k.to_vector(), pv = v.to_vector();
  std::vector<double> out(pq.size(), 0.0);
  for (int64_t h = 0; h < heads; ++h) {
    const int64_t base = h * T * D;
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> scores(static_cast<size_t>(T), -INFINITY);
      double max_score = -INFINITY;
      for (int64_t j = 0; j <= t; ++j) {
        double dot = 0.0;
        for (int64_t d = 0; d < D; ++d) dot += pq[base + t * D + d] * pk[base + j * D + d];
        scores[j] = dot * scale;
        max_score = std::max(max_score, scores[j]);
      }
      double total = 0.0;
      for (int64_t j = 0; j <= t; ++j) total += std::exp(scores[j] - max_score);
      for (int64_t j = 0; j <= t; ++j) {
        const double p = std::exp(scores[j] - max_score) / total;
        for (int64_t d = 0; d < D; ++d) out[base + t * D + d] += p * pv[base + j * D + d];
      }
    }
  }
  return Tensor::from_vector(out, s);
}

// L = sum(w * attention(q, k, v)) and its gradients, all in q's dtype.
std::vector<Tensor> attention_grads(Tensor q, Tensor k, Tensor v, const Tensor& w) {
  for (Tensor* t : {&q, &k, &v}) t->set_requires_grad(true);
  backward(sum_all(mul(causal_attention(q, k, v), w)));
  return {q.grad(), k.grad(), v.grad()};
}

// Sets the kept-probabilities limit for a scope, restoring it even when a REQUIRE fails.
class SavedProbsLimit {
 public:
  explicit SavedProbsLimit(int64_t bytes) : previous_(set_attention_saved_probs_limit(bytes)) {}
  ~SavedProbsLimit() { set_attention_saved_probs_limit(previous_); }

 private:
  int64_t previous_;
};

}  // namespace

TEST_CASE("causal_attention: forward matches the naive reference", "[attention]") {
  const std::vector<Shape> shapes = {{1, 1, 1, 1},  {1, 1, 7, 1},   {1, 1, 1, 5},
                                     {2, 3, 13, 8}, {3, 2, 33, 16}, {1, 2, 64, 3}};
  for (const Shape& shape : shapes) {
    for (double scale : {0.0, 0.37}) {
      INFO("shape " << shape_str(shape) << " scale " << scale);
      Tensor q = random_tensor(shape, 1), k = random_tensor(shape, 2), v = random_tensor(shape, 3);
      Tensor out = causal_attention(q, k, v, scale);
      REQUIRE(out.shape() == shape);
      CHECK(max_abs_diff(out, reference_attention(q, k, v, scale)) < 1e-12);
    }
  }
}

TEST_CASE("causal_attention: the first query sees only the first key", "[attention]") {
  Tensor q = random_tensor({1, 1, 4, 2}, 4), k = random_tensor({1, 1, 4, 2}, 5);
  Tensor v = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8}, {1, 1, 4, 2});
  const std::vector<double> out = causal_attention(q, k, v).to_vector();
  CHECK(out[0] == Approx(1.0).epsilon(1e-14));
  CHECK(out[1] == Approx(2.0).epsilon(1e-14));
  // Later rows are strict averages of earlier value rows: inside [1, t-th value].
  CHECK(out[6] > 1.0);
  CHECK(out[6] < 7.0);
}

TEST_CASE("causal_attention: changing future keys and values leaves earlier rows unchanged", "[attention]") {
  const Shape shape{2, 2, 9, 4};
  const int64_t T = 9, D = 4, cut = 5;  // rows t < cut must not see positions >= cut
  Tensor q = random_tensor(shape, 6), k = random_tensor(shape, 7), v = random_tensor(shape, 8);
  std::vector<double> k2 = k.to_vector(), v2 = v.to_vector();
  for (size_t i = 0; i < k2.size(); ++i) {
    const int64_t t = static_cast<int64_t>(i) / D % T;
    if (t >= cut) {
      k2[i] += 3.0;
      v2[i] -= 5.0;
    }
  }
  const std::vector<double> before = causal_attention(q, k, v).to_vector();
  const std::vector<double> after =
      causal_attention(q, Tensor::from_vector(k2, shape), Tensor::from_vector(v2, shape)).to_vector();
  double earlier_change = 0.0, later_change = 0.0;
  for (size_t i = 0; i < before.size(); ++i) {
    const int64_t t = static_cast<int64_t>(i) / D % T;
    (t < cut ? earlier_change : later_change) += std::fabs(before[i] - after[i]);
  }
  CHECK(earlier_change == 0.0);
  CHECK(later_change > 1.0);  // the edit was visible to the rows allowed to see it
}

TEST_CASE("causal_attention: gradients of q, k and v", "[attention][gradcheck]") {
  for (const Shape& shape : {Shape{1, 2, 5, 3}, Shape{2, 1, 4, 2}, Shape{1, 1, 1, 1}}) {
    for (double scale : {0.0, 0.7}) {
      INFO("shape " << shape_str(shape) << " scale " << scale);
      Tensor q = random_tensor(shape, 10), k = random_tensor(shape, 11), v = random_tensor(shape, 12);
      REQUIRE_GRADCHECK([scale](const std::vector<Tensor>& in) { return causal_attention(in[0], in[1], in[2], scale); },
                        std::vector<Tensor>({q, k, v}));
    }
  }
}

TEST_CASE("causal_attention: backward from kept probabilities equals backward that recomputes them",
          "[attention][gradcheck]") {
  // Forward keeps P for backward unless it exceeds the limit; with limit 0 backward recomputes
  // P from the log-sum-exp. Both must give the same gradients, bit for bit (the same rounding).
  const Shape shape{2, 3, 37, 8};
  Tensor q = random_tensor(shape, 50, 1.0, DType::f32), k = random_tensor(shape, 51, 1.0, DType::f32),
         v = random_tensor(shape, 52, 1.0, DType::f32), w = random_tensor(shape, 53, 1.0, DType::f32);
  const std::vector<Tensor> kept = attention_grads(q.clone(), k.clone(), v.clone(), w);
  std::vector<Tensor> recomputed;
  {
    SavedProbsLimit never(0);
    recomputed = attention_grads(q.clone(), k.clone(), v.clone(), w);
    REQUIRE_GRADCHECK([](const std::vector<Tensor>& in) { return causal_attention(in[0], in[1], in[2], 0.6); },
                      std::vector<Tensor>({random_tensor({1, 2, 5, 3}, 54), random_tensor({1, 2, 5, 3}, 55),
                                           random_tensor({1, 2, 5, 3}, 56)}));
  }
  for (size_t i = 0; i < 3; ++i) {
    INFO("gradient of input " << i);
    CHECK(kept[i].to_float_vector() == recomputed[i].to_float_vector());
  }
  CHECK_THROWS_WITH(set_attention_saved_probs_limit(-1), Catch::Contains("must be >= 0"));
}

TEST_CASE("causal_attention: the kept probabilities share one budget over all calls", "[attention]") {
  // One call's P is 2 heads x 16 x 16 f64 = 4096 bytes; with a 4096-byte budget the first call
  // keeps it, the second (while the first is still on the tape) recomputes, and the bytes come
  // back when the tape entries go - after backward or clear_tape.
  const Shape shape{1, 2, 16, 4};
  Tensor q = random_tensor(shape, 60), k = random_tensor(shape, 61), v = random_tensor(shape, 62);
  REQUIRE(attention_saved_probs_bytes() == 0);
  const std::vector<Tensor> want =
      attention_grads(q.clone(), k.clone(), v.clone(), Tensor::full(shape, 1.0, DType::f64));
  SavedProbsLimit one_call(4096);
  Tensor x = q.clone().set_requires_grad(true);
  Tensor first = causal_attention(x, k, v);
  CHECK(attention_saved_probs_bytes() == 4096);
  Tensor second = causal_attention(x, k, v);
  CHECK(attention_saved_probs_bytes() == 4096);
  backward(add(sum_all(first), sum_all(second)));
  CHECK(attention_saved_probs_bytes() == 0);
  CHECK(max_abs_diff(x.grad(), add(want[0], want[0])) < 1e-12);
  causal_attention(x, k, v);
  CHECK(attention_saved_probs_bytes() == 4096);
  clear_tape();
  CHECK(attention_saved_probs_bytes() == 0);
}

TEST_CASE("causal_attention: gradients through strided inputs and with a constant input", "[attention][gradcheck]") {
  // q, k, v as [B, T, H, D] permuted to [B, H, T, D]: the op must read the strides right and
  // send the gradient back through the view.
  Tensor q = random_tensor({2, 4, 2, 3}, 13), k = random_tensor({2, 4, 2, 3}, 14), v = random_tensor({2, 4, 2, 3}, 15);
  REQUIRE_GRADCHECK(
      [](const std::vector<Tensor>& in) {
        return causal_attention(permute(in[0], {0, 2, 1, 3}), permute(in[1], {0, 2, 1, 3}),
                                permute(in[2], {0, 2, 1, 3}));
      },
      std::vector<Tensor>({q, k, v}));
  Tensor constant_v = random_tensor({1, 2, 5, 3}, 16);
  REQUIRE_GRADCHECK([constant_v](const std::vector<Tensor>& in) { return causal_attention(in[0], in[1], constant_v); },
                    std::vector<Tensor>({random_tensor({1, 2, 5, 3}, 17), random_tensor({1, 2, 5, 3}, 18)}));
}

TEST_CASE("causal_attention: one tape entry, none without grad", "[attention]") {
  clear_tape();
  Tensor q = random_tensor({1, 1, 3, 2}, 19), k = random_tensor({1, 1, 3, 2}, 20), v = random_tensor({1, 1, 3, 2}, 21);
  causal_attention(q, k, v);
  CHECK(tape_size() == 0);
  q.set_requires_grad(true);
  Tensor out = causal_attention(q, k, v);
  CHECK(tape_size() == 1);
  CHECK(out.requires_grad());
  clear_tape();
  {
    NoGradScope no_grad;
    CHECK_FALSE(causal_attention(q, k, v).requires_grad());
    CHECK(tape_size() == 0);
  }
}

TEST_CASE("causal_attention: f32 forward and gradients match f64", "[attention]") {
  const Shape shape{2, 2, 37, 16};
  Tensor q = random_tensor(shape, 22), k = random_tensor(shape, 23), v = random_tensor(shape, 24);
  Tensor w = random_tensor(shape, 25);
  Tensor out64 = causal_attention(q, k, v);
  Tensor out32 = causal_attention(q.to(DType::f32), k.to(DType::f32), v.to(DType::f32));
  REQUIRE(out32.dtype() == DType::f32);
  CHECK(max_abs_diff(out32.to(DType::f64), out64) < 1e-5);

  const std::vector<Tensor> g64 = attention_grads(q.clone(), k.clone(), v.clone(), w);
  const std::vector<Tensor> g32 =
      attention_grads(q.to(DType::f32), k.to(DType::f32), v.to(DType::f32), w.to(DType::f32));
  for (size_t i = 0; i < 3; ++i) {
    INFO("gradient of input " << i);
    REQUIRE(g64[i].defined());
    REQUIRE(g32[i].defined());
    CHECK(max_abs_diff(g32[i].to(DType::f64), g64[i]) < 1e-4);
  }
}

TEST_CASE("causal_attention: large scores stay finite", "[attention]") {
  // Scores around +-1e3: without subtracting the row max, exp would overflow.
  Tensor q = affine(random_tensor({1, 1, 6, 4}, 26), 40.0, 0.0), k = affine(random_tensor({1, 1, 6, 4}, 27), 40.0, 0.0);
  Tensor v = random_tensor({1, 1, 6, 4}, 28);
  Tensor out = causal_attention(q, k, v, 1.0);
  CHECK(max_abs_diff(out, reference_attention(q, k, v, 1.0)) < 1e-9);
}

TEST_CASE("causal_attention: rejects bad inputs with clear messages", "[attention]") {
  Tensor a = random_tensor({1, 2, 4, 3}, 29);
  CHECK_THROWS_WITH(causal_attention(a, random_tensor({1, 2, 5, 3}, 30), a),
                    Catch::Contains("causal_attention") && Catch::Contains("must have q's shape (1, 2, 4, 3)"));
  CHECK_THROWS_WITH(causal_attention(a, a, random_tensor({1, 2, 4, 2}, 31)), Catch::Contains("must have q's shape"));
  CHECK_THROWS_WITH(
      causal_attention(random_tensor({2, 4, 3}, 32), random_tensor({2, 4, 3}, 33), random_tensor({2, 4, 3}, 34)),
      Catch::Contains("q must be [B, H, T, D], got shape (2, 4, 3)"));
  CHECK_THROWS_WITH(causal_attention(a, a.to(DType::f32), a), Catch::Contains("element types differ"));
  Tensor ints = Tensor::zeros({1, 1, 2, 2}, DType::i32);
  CHECK_THROWS_WITH(causal_attention(ints, ints, ints), Catch::Contains("needs floating-point tensors"));
  Tensor empty_head = Tensor::zeros({1, 1, 2, 0}, DType::f64);
  CHECK_THROWS_WITH(causal_attention(empty_head, empty_head, empty_head), Catch::Contains("D must be at least 1"));
}
