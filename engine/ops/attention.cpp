#include "engine/ops/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
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
  ENGINE_CHECK(is_floating(q.dtype()), op, std::string("needs f32 or f64 tensors, got ") + dtype_name(q.dtype()));
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

Tensor causal_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, double scale) {
  check_attention_inputs(q_in, k_in, v_in, scale);
  const Shape shape = q_in.shape();
  if (scale == 0.0) scale = 1.0 / std::sqrt(static_cast<double>(shape[3]));
  Tensor q = kernel_input(q_in), k = kernel_input(k_in), v = kernel_input(v_in);
  Tensor out = Tensor::empty(shape, q.dtype(), q.device());
  Tensor lse = Tensor::empty({shape[0], shape[1], shape[2]}, q.dtype(), q.device());
  ON_DEVICE(q, attention_forward, q, k, v, scale, out, lse);
  if (needs_grad({q_in, k_in, v_in})) {
    Tensor saved_out = out.detach();  // detached before record() turns `out` into a tape node
    record(out, {q_in, k_in, v_in}, [q, k, v, saved_out, lse, scale](const Tensor& grad_out, GradSink& g) {
      Tensor dout = kernel_input(grad_out);
      // One fused pass yields all three gradients; the ones no input wants are dropped by add().
      Tensor dq = Tensor::zeros(q.shape(), q.dtype(), q.device());
      Tensor dk = Tensor::zeros(q.shape(), q.dtype(), q.device());
      Tensor dv = Tensor::zeros(q.shape(), q.dtype(), q.device());
      ON_DEVICE(dout, attention_backward, q, k, v, saved_out, lse, dout, scale, dq, dk, dv);
      if (g.wants(0)) g.add(0, dq);
      if (g.wants(1)) g.add(1, dk);
      if (g.wants(2)) g.add(2, dv);
    });
  }
  return out;
}

namespace cpu {

// The CPU path works per (batch, head) on whole score matrices with oneDNN's batched matmul:
// S = Q K^T, P = causal softmax(scale S), O = P V; backward recomputes P from the saved
// log-sum-exp (no [B H, T, T] kept between passes) and uses four more batched products. The
// masked half costs FLOPs, but GEMMs run 5-10x faster than row-by-row loops over the short
// head dimension (measured: 12 ms -> see the README profile, B 16, H 4, T 128, D 32).
namespace {

Tensor heads3(const Tensor& x) {  // [B, H, T, D] contiguous -> [B H, T, D]
  return make_view(x, {x.size(0) * x.size(1), x.size(2), x.size(3)}, {x.size(2) * x.size(3), x.size(3), 1}, x.offset());
}

// In place on S [BH, T, T]: P = exp(scale S - lse) on and below the diagonal, 0 above. When
// `lse` is to be computed (forward), each row's log-sum-exp is written there first.
template <class T>
void causal_softmax_rows(T* s, int64_t rows, int64_t len, T scale, T* lse, bool compute_lse) {
  parallel_for(rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      T* row = s + r * len;
      const int64_t n = r % len + 1;  // query t sees keys 0..t
      if (compute_lse) {
        T row_max = -std::numeric_limits<T>::infinity();
        for (int64_t j = 0; j < n; ++j) row_max = scale * row[j] > row_max ? scale * row[j] : row_max;
        T total = 0;
#pragma omp simd reduction(+ : total)
        for (int64_t j = 0; j < n; ++j) total += engine_exp(scale * row[j] - row_max);
        lse[r] = row_max + std::log(total);
      }
      const T l = lse[r];
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) row[j] = engine_exp(scale * row[j] - l);
      std::fill(row + n, row + len, T(0));
    }
  });
}

// Turns S into P (recomputed from lse) and dP into dS = scale * P * (dP - rowsum(dO * O)),
// zero above the diagonal because P is.
template <class T>
void score_gradients(T* p, T* dp, const T* dout, const T* out, const T* lse, int64_t rows, int64_t len, int64_t D,
                     T scale) {
  causal_softmax_rows(p, rows, len, scale, const_cast<T*>(lse), false);
  parallel_for(rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      T correction = 0;
#pragma omp simd reduction(+ : correction)
      for (int64_t d = 0; d < D; ++d) correction += dout[r * D + d] * out[r * D + d];
      const T* prow = p + r * len;
      T* row = dp + r * len;
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) row[j] = scale * prow[j] * (row[j] - correction);
    }
  });
}

}  // namespace

void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, double scale, Tensor& out, Tensor& lse) {
  NoGradScope no_grad;
  const int64_t len = q.size(2);
  Tensor p = matmul(heads3(q), heads3(k), false, true);  // [BH, T, T]
  DISPATCH_FLOAT(q.dtype(), "causal_attention", {
    causal_softmax_rows(p.data<scalar_t>(), p.size(0) * len, len, static_cast<scalar_t>(scale), lse.data<scalar_t>(),
                        true);
  });
  Tensor o = heads3(out);
  copy_into(matmul(p, heads3(v)), o);
}

void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        const Tensor& dout, double scale, Tensor& dq, Tensor& dk, Tensor& dv) {
  NoGradScope no_grad;
  const int64_t len = q.size(2);
  const Tensor q3 = heads3(q), k3 = heads3(k), v3 = heads3(v), do3 = heads3(dout), o3 = heads3(out);
  Tensor p = matmul(q3, k3, false, true);
  Tensor dp = matmul(do3, v3, false, true);  // dP = dO V^T
  DISPATCH_FLOAT(q.dtype(), "causal_attention_backward", {
    score_gradients(p.data<scalar_t>(), dp.data<scalar_t>(), do3.data<scalar_t>(), o3.data<scalar_t>(),
                    lse.data<scalar_t>(), p.size(0) * len, len, q.size(3), static_cast<scalar_t>(scale));
  });
  Tensor dq3 = heads3(dq), dk3 = heads3(dk), dv3 = heads3(dv);
  copy_into(matmul(p, do3, true, false), dv3);  // dV = P^T dO
  copy_into(matmul(dp, k3), dq3);               // dQ = dS K
  copy_into(matmul(dp, q3, true, false), dk3);  // dK = dS^T Q
}

}  // namespace cpu
}  // namespace engine
