#include "engine/ops/attention.h"

#include <cmath>
#include <limits>
#include <vector>

#include "engine/core/dispatch.h"
#include "engine/core/fast_math.h"
#include "engine/core/parallel.h"
#include "engine/core/tape.h"
#include "engine/ops/copy.h"

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

namespace {

// Dot product of two contiguous rows in the element type. `omp simd reduction` lets the
// compiler vectorize the sum (a plain loop would not, as it reorders additions); the order is
// fixed by the binary, so results stay reproducible.
template <class T>
ENGINE_ALWAYS_INLINE T row_dot(const T* a, const T* b, int64_t n) {
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

// y += alpha * x over a contiguous row.
template <class T>
ENGINE_ALWAYS_INLINE void row_axpy(T alpha, const T* x, T* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

struct AttentionDims {
  int64_t heads;  // B * H
  int64_t T, D;
};

AttentionDims attention_dims(const Tensor& q) { return {q.size(0) * q.size(1), q.size(2), q.size(3)}; }

}  // namespace

namespace {

// One (batch, head): T queries against their causal prefix of keys. `weights` has room for T.
template <class T>
ENGINE_SIMD_CLONES void attention_head_forward(const T* __restrict qh, const T* __restrict kh, const T* __restrict vh,
                                               int64_t len, int64_t D, T sc, T* __restrict oh, T* __restrict lse_h,
                                               T* __restrict weights) {
  for (int64_t t = 0; t < len; ++t) {
    const T* qt = qh + t * D;
    T row_max = -std::numeric_limits<T>::infinity();
    for (int64_t j = 0; j <= t; ++j) {
      const T s = sc * row_dot(qt, kh + j * D, D);
      weights[j] = s;
      row_max = s > row_max ? s : row_max;
    }
    T total = 0;
#pragma omp simd reduction(+ : total)
    for (int64_t j = 0; j <= t; ++j) {
      weights[j] = engine_exp(weights[j] - row_max);
      total += weights[j];
    }
    T* ot = oh + t * D;
    std::fill(ot, ot + D, T(0));
    for (int64_t j = 0; j <= t; ++j) row_axpy(weights[j], vh + j * D, ot, D);
    const T inv_total = T(1) / total;
    for (int64_t d = 0; d < D; ++d) ot[d] *= inv_total;
    lse_h[t] = row_max + std::log(total);
  }
}

// Each (batch, head) owns its slices of dq, dk and dv: no two threads write the same row.
template <class T>
ENGINE_SIMD_CLONES void attention_head_backward(const T* __restrict qh, const T* __restrict kh, const T* __restrict vh,
                                                const T* __restrict oh, const T* __restrict lse_h,
                                                const T* __restrict doh, int64_t len, int64_t D, T sc,
                                                T* __restrict dqh, T* __restrict dkh, T* __restrict dvh) {
  for (int64_t t = 0; t < len; ++t) {
    const T* qt = qh + t * D;
    const T* dot_t = doh + t * D;
    T* dqt = dqh + t * D;
    const T lse_t = lse_h[t];
    // rowsum(dO * O) = sum_j P_tj dP_tj: the softmax Jacobian's correction term.
    const T correction = row_dot(dot_t, oh + t * D, D);
    for (int64_t j = 0; j <= t; ++j) {
      const T* kj = kh + j * D;
      const T* vj = vh + j * D;
      const T p = engine_exp(sc * row_dot(qt, kj, D) - lse_t);
      const T dp = row_dot(dot_t, vj, D);
      const T ds = p * (dp - correction);
      row_axpy(p, dot_t, dvh + j * D, D);
      row_axpy(sc * ds, qt, dkh + j * D, D);
      row_axpy(sc * ds, kj, dqt, D);
    }
  }
}

}  // namespace

void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, double scale, Tensor& out, Tensor& lse) {
  const AttentionDims dims = attention_dims(q);
  const int64_t T = dims.T, D = dims.D;
  DISPATCH_FLOAT(q.dtype(), "causal_attention", {
    const scalar_t* pq = q.data<scalar_t>();
    const scalar_t* pk = k.data<scalar_t>();
    const scalar_t* pv = v.data<scalar_t>();
    scalar_t* po = out.data<scalar_t>();
    scalar_t* pl = lse.data<scalar_t>();
    const scalar_t sc = static_cast<scalar_t>(scale);
    parallel_for(dims.heads, 1, [&](int64_t head_begin, int64_t head_end) {
      std::vector<scalar_t> weights(static_cast<size_t>(T));  // one score row, keys 0..t
      for (int64_t bh = head_begin; bh < head_end; ++bh) {
        const int64_t base = bh * T * D;
        attention_head_forward(pq + base, pk + base, pv + base, T, D, sc, po + base, pl + bh * T, weights.data());
      }
    });
  });
}

void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        const Tensor& dout, double scale, Tensor& dq, Tensor& dk, Tensor& dv) {
  const AttentionDims dims = attention_dims(q);
  const int64_t T = dims.T, D = dims.D;
  DISPATCH_FLOAT(q.dtype(), "causal_attention_backward", {
    const scalar_t* pq = q.data<scalar_t>();
    const scalar_t* pk = k.data<scalar_t>();
    const scalar_t* pv = v.data<scalar_t>();
    const scalar_t* po = out.data<scalar_t>();
    const scalar_t* pl = lse.data<scalar_t>();
    const scalar_t* pdo = dout.data<scalar_t>();
    scalar_t* pdq = dq.data<scalar_t>();
    scalar_t* pdk = dk.data<scalar_t>();
    scalar_t* pdv = dv.data<scalar_t>();
    const scalar_t sc = static_cast<scalar_t>(scale);
    parallel_for(dims.heads, 1, [&](int64_t head_begin, int64_t head_end) {
      for (int64_t bh = head_begin; bh < head_end; ++bh) {
        const int64_t base = bh * T * D;
        attention_head_backward(pq + base, pk + base, pv + base, po + base, pl + bh * T, pdo + base, T, D, sc,
                                pdq + base, pdk + base, pdv + base);
      }
    });
  });
}

}  // namespace cpu
}  // namespace engine
