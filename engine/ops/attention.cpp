#include "engine/ops/attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "engine/core/dispatch.h"
#include "engine/core/fast_math.h"
#include "engine/core/parallel.h"
#include "engine/core/tape.h"
#include "engine/ops/copy.h"
#include "engine/ops/matmul.h"

namespace engine {

namespace {

void check_attention_inputs(const Tensor& q, const Tensor& k, const Tensor& v, double scale) {
  const char* op = "causal_attention";
  ENGINE_CHECK(q.defined() && k.defined() && v.defined(), op, "q, k and v must all be defined");
  ENGINE_CHECK(q.ndim() == 4, op, "q must be [B, H, T, D], got shape " + shape_str(q.shape()));
  ENGINE_CHECK(
      k.shape() == q.shape() && v.shape() == q.shape(), op,
      "k " + shape_str(k.shape()) + " and v " + shape_str(v.shape()) + " must have q's shape " + shape_str(q.shape()));
  ENGINE_CHECK(is_floating(q.dtype()), op, std::string("needs floating-point tensors, got ") + dtype_name(q.dtype()));
  ENGINE_CHECK(k.dtype() == q.dtype() && v.dtype() == q.dtype(), op,
               std::string("element types differ: q ") + dtype_name(q.dtype()) + ", k " + dtype_name(k.dtype()) +
                   ", v " + dtype_name(v.dtype()));
  ENGINE_CHECK(
      k.device() == q.device() && v.device() == q.device(), op,
      "q, k and v live on different devices: " + q.device().str() + ", " + k.device().str() + ", " + v.device().str());
  ENGINE_CHECK(q.size(3) >= 1, op, "head dimension D must be at least 1, got shape " + shape_str(q.shape()));
  ENGINE_CHECK(std::isfinite(scale), op, "scale must be finite, got " + std::to_string(scale));
}

}  // namespace

namespace {
std::atomic<int64_t> saved_probs_limit{int64_t{256} << 20};
std::atomic<int64_t> saved_probs_bytes{0};  // held by tape entries right now, all layers together

// Probabilities kept for one backward; the bytes count against the limit until it is destroyed
// (the tape entry ran, or the tape was cleared).
struct KeptProbs {
  Tensor probs;
  int64_t bytes;
  ~KeptProbs() { saved_probs_bytes -= bytes; }
};

// The probabilities to keep, or null when they would take the kept total past the limit.
std::shared_ptr<KeptProbs> keep_probs(const Tensor& probs) {
  const int64_t bytes = probs.numel() * static_cast<int64_t>(dtype_size(probs.dtype()));
  const int64_t total = saved_probs_bytes += bytes;
  if (total > saved_probs_limit.load()) {
    saved_probs_bytes -= bytes;
    return nullptr;
  }
  return std::shared_ptr<KeptProbs>(new KeptProbs{probs, bytes});
}
}  // namespace

int64_t set_attention_saved_probs_limit(int64_t bytes) {
  ENGINE_CHECK(bytes >= 0, "set_attention_saved_probs_limit", "the limit must be >= 0, got " + std::to_string(bytes));
  return saved_probs_limit.exchange(bytes);
}

int64_t attention_saved_probs_bytes() { return saved_probs_bytes.load(); }

Tensor causal_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, double scale) {
  check_attention_inputs(q_in, k_in, v_in, scale);
  const Shape shape = q_in.shape();
  if (scale == 0.0) scale = 1.0 / std::sqrt(static_cast<double>(shape[3]));
  Tensor q = kernel_input(q_in), k = kernel_input(k_in), v = kernel_input(v_in);
  Tensor out = Tensor::empty(shape, q.dtype(), q.device());
  // For bf16 q, k, v the softmax runs in f32 (scores, log-sum-exp) and P is kept in bf16, the
  // type the products read (half the bytes of the f32 probabilities).
  Tensor lse = Tensor::empty({shape[0], shape[1], shape[2]}, compute_dtype(q.dtype()), q.device());
  Tensor probs = Tensor::empty({shape[0], shape[1], shape[2], shape[2]}, q.dtype(), q.device());
  ON_DEVICE(q, attention_forward, q, k, v, scale, out, lse, probs);
  if (needs_grad({q_in, k_in, v_in})) {
    // Keeping P costs B H T^2 elements until backward and saves it a product and a softmax.
    std::shared_ptr<KeptProbs> kept = keep_probs(probs);
    Tensor saved_out = out.detach();  // detached before record() turns `out` into a tape node
    record(out, {q_in, k_in, v_in},
           [q, k, v, saved_out, lse, kept, scale, precision = matmul_precision()](const Tensor& grad_out, GradSink& g) {
             const Tensor saved_probs = kept ? kept->probs : Tensor();
             MatmulPrecisionScope scope(precision);
             Tensor dout = kernel_input(grad_out);
             // One fused pass yields all three gradients; the ones no input wants are dropped by add().
             Tensor dq = Tensor::empty(q.shape(), q.dtype(), q.device());
             Tensor dk = Tensor::empty(q.shape(), q.dtype(), q.device());
             Tensor dv = Tensor::empty(q.shape(), q.dtype(), q.device());
             ON_DEVICE(dout, attention_backward, q, k, v, saved_out, lse, saved_probs, dout, scale, dq, dk, dv);
             if (g.wants(0)) g.add(0, dq);
             if (g.wants(1)) g.add(1, dk);
             if (g.wants(2)) g.add(2, dv);
           });
  }
  return out;
}

namespace cpu {

// The CPU path works per (batch, head) on whole score matrices with oneDNN's batched matmul:
// S = Q K^T, P = causal softmax(scale S), O = P V; backward takes P as forward left it, or
// recomputes it from the saved log-sum-exp, and uses four more batched products. The masked
// half costs FLOPs, but GEMMs run 5-10x faster than row-by-row loops over the short head
// dimension (B 16, H 4, T 128, D 32); computing only the tiles left of the diagonal takes
// strided operands, which fall off oneDNN's fast kernels and measured slower at T <= 256.
namespace {

// One score row: P = exp(scale S - lse) on keys 0..n-1, 0 after, from the f32 (T) scores s into
// p, which is s itself for f32 and f64 (in place) or a bf16 row (P stored as the products read
// it). With compute_lse the row's log-sum-exp is computed first and written to *lse.
// Max-subtracted, so no overflow. s and p may alias: no __restrict on them.
template <class T, class P>
ENGINE_SIMD_CLONES void causal_softmax_row(const T* s, P* p, int64_t n, int64_t len, T scale, T* lse,
                                           bool compute_lse) {
  if (compute_lse) {
    T row_max = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : row_max)
    for (int64_t j = 0; j < n; ++j) row_max = std::max(row_max, scale * s[j]);
    T total = 0;
#pragma omp simd reduction(+ : total)
    for (int64_t j = 0; j < n; ++j) total += engine_exp(scale * s[j] - row_max);
    *lse = row_max + std::log(total);
  }
  const T l = *lse;
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) p[j] = engine_exp(scale * s[j] - l);
  for (int64_t j = n; j < len; ++j) p[j] = T(0);
}

// Over S [BH, T, T], row r being query r % T: see causal_softmax_row.
template <class T, class P>
void causal_softmax_rows(const T* s, P* p, int64_t rows, int64_t len, T scale, T* lse, bool compute_lse) {
  parallel_for(rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      causal_softmax_row(s + r * len, p + r * len, r % len + 1, len, scale, lse + r, compute_lse);
  });
}

// dS = scale * P * (dP - rowsum(dO * O)) for one row, from P (type P: bf16 for bf16 attention)
// and the f32 dP, into ds (dp itself for f32 and f64; a bf16 row, the products' operand, for
// bf16). dp and ds may alias: no __restrict on them.
template <class T, class X, class P>
ENGINE_SIMD_CLONES void score_gradient_row(const P* __restrict p, const T* dp, P* ds, const X* __restrict dout,
                                           const X* __restrict out, int64_t len, int64_t D, T scale) {
  T correction = 0;
#pragma omp simd reduction(+ : correction)
  for (int64_t d = 0; d < D; ++d) correction += static_cast<T>(dout[d]) * static_cast<T>(out[d]);
#pragma omp simd
  for (int64_t j = 0; j < len; ++j) ds[j] = scale * static_cast<T>(p[j]) * (dp[j] - correction);
}

template <class T, class X, class P>
void score_gradients(const P* p, const T* dp, P* ds, const X* dout, const X* out, int64_t rows, int64_t len,
                     int64_t D, T scale) {
  parallel_for(rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      score_gradient_row(p + r * len, dp + r * len, ds + r * len, dout + r * D, out + r * D, len, D, scale);
  });
}

// C[b] = op(A[b]) op(B[b]) over the B*H (batch, head) pairs, written straight into C.
void head_gemm(const Tensor& a, const Tensor& b, bool ta, bool tb, int64_t m, int64_t n, int64_t k, Tensor& c) {
  gemm(batched_gemm_args(a.size(0) * a.size(1), m, n, k, ta, tb), a, b, Tensor(), c);
}

}  // namespace

// For bf16 q, k, v the scores S and dP are f32 scratch (lse's type), while P and dS are written
// straight to bf16 (the products' operands; P is what forward keeps). For f32 and f64 they are
// computed in place in one buffer each.
void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, double scale, Tensor& out, Tensor& lse,
                       Tensor& probs) {
  const int64_t len = q.size(2), D = q.size(3);
  if (q.numel() == 0) return;
  Tensor scores = probs.dtype() == lse.dtype() ? probs : Tensor::empty(probs.shape(), lse.dtype(), q.device());
  head_gemm(q, k, false, true, len, len, D, scores);  // S = Q K^T
  DISPATCH_FLOAT_BF16(q.dtype(), "causal_attention", {
    using T = acc_t<scalar_t>;
    causal_softmax_rows(scores.data<T>(), probs.data<scalar_t>(), q.size(0) * q.size(1) * len, len,
                        static_cast<T>(scale), lse.data<T>(), true);
  });
  head_gemm(probs, v, false, false, len, D, len, out);  // O = P V
}

void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        const Tensor& probs, const Tensor& dout, double scale, Tensor& dq, Tensor& dk, Tensor& dv) {
  const int64_t len = q.size(2), D = q.size(3);
  if (q.numel() == 0) return;
  const DType acc = lse.dtype();
  const bool separate = q.dtype() != acc;  // bf16: P and dS in bf16 buffers of their own
  const Shape square{q.size(0), q.size(1), len, len};
  const int64_t rows = q.size(0) * q.size(1) * len;
  Tensor p = probs;
  if (!p.defined()) {  // recompute P from S = Q K^T and the saved lse
    p = Tensor::empty(square, q.dtype(), q.device());
    Tensor scores = separate ? Tensor::empty(square, acc, q.device()) : p;
    head_gemm(q, k, false, true, len, len, D, scores);
    DISPATCH_FLOAT_BF16(q.dtype(), "causal_attention_backward", {
      using T = acc_t<scalar_t>;
      causal_softmax_rows(scores.data<T>(), p.data<scalar_t>(), rows, len, static_cast<T>(scale),
                          const_cast<T*>(lse.data<T>()), false);
    });
  }
  Tensor dp = Tensor::empty(square, acc, q.device());
  head_gemm(dout, v, false, true, len, len, D, dp);  // dP = dO V^T
  Tensor ds = separate ? Tensor::empty(square, q.dtype(), q.device()) : dp;
  DISPATCH_FLOAT_BF16(q.dtype(), "causal_attention_backward", {
    using T = acc_t<scalar_t>;
    score_gradients(p.data<scalar_t>(), dp.data<T>(), ds.data<scalar_t>(), dout.data<scalar_t>(),
                    out.data<scalar_t>(), rows, len, D, static_cast<T>(scale));
  });
  head_gemm(p, dout, true, false, len, D, len, dv);   // dV = P^T dO
  head_gemm(ds, k, false, false, len, D, len, dq);    // dQ = dS K
  head_gemm(ds, q, true, false, len, D, len, dk);     // dK = dS^T Q
}

}  // namespace cpu
}  // namespace engine
