#include "engine/ops/norm.h"

#include <cmath>

#include "engine/core/dispatch.h"
#include "engine/core/parallel.h"
#include "engine/core/tape.h"
#include "engine/ops/copy.h"

namespace engine {

namespace {

Tensor normalize(const Tensor& x_in, const Tensor& gamma_in, const Tensor& beta_in, double eps, bool rms) {
  const char* name = rms ? "rmsnorm" : "layernorm";
  ENGINE_CHECK(is_floating(x_in.dtype()) && x_in.ndim() >= 1, name, "needs a floating tensor, got " + x_in.str());
  const int64_t n = x_in.size(-1);
  ENGINE_CHECK(gamma_in.defined() && gamma_in.shape() == Shape{n}, name,
               "scale must have shape (" + std::to_string(n) + "), got " + gamma_in.str());
  ENGINE_CHECK(!beta_in.defined() || beta_in.shape() == Shape{n}, name,
               "shift must have shape (" + std::to_string(n) + "), got " + beta_in.str());
  ENGINE_CHECK(eps > 0, name, "eps must be positive");
  // As in linear: parameters on another device than the activations would reach a kernel as
  // pointers it cannot read.
  ENGINE_CHECK(gamma_in.device() == x_in.device() && (!beta_in.defined() || beta_in.device() == x_in.device()), name,
               "scale " + gamma_in.str() + (beta_in.defined() ? " and shift " + beta_in.str() : std::string()) +
                   " must be on the input's device (" + x_in.str() + ")");
  // bf16 activations are normalized in f32 with f32 scale and shift (the parameters' type).
  ENGINE_CHECK(gamma_in.dtype() == compute_dtype(x_in.dtype()) &&
                   (!beta_in.defined() || beta_in.dtype() == gamma_in.dtype()),
               name,
               std::string("scale and shift must be ") + dtype_name(compute_dtype(x_in.dtype())) + " for " +
                   x_in.str() + ", got " + gamma_in.str());
  Tensor x = kernel_input(x_in), gamma = kernel_input(gamma_in);
  Tensor beta = beta_in.defined() ? kernel_input(beta_in) : Tensor();
  const int64_t rows = n ? x.numel() / n : 0;
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  const DType stats = gamma.dtype();
  Tensor mean = Tensor::empty({rows}, stats, x.device()), rstd = Tensor::empty({rows}, stats, x.device());
  ON_DEVICE(x, layernorm_forward, x, gamma, beta, eps, rms, y, mean, rstd);
  if (needs_grad({x_in, gamma_in, beta_in})) {
    const bool has_beta = beta.defined();
    record(y, {x_in, gamma_in, beta_in}, [=](const Tensor& dy, GradSink& g) {
      Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
      Tensor dgamma = Tensor::empty(gamma.shape(), gamma.dtype(), x.device());
      Tensor dbeta = has_beta ? Tensor::empty(gamma.shape(), gamma.dtype(), x.device()) : Tensor();
      ON_DEVICE(dy, layernorm_backward, x, gamma, mean, rstd, dy, rms, dx, dgamma, dbeta);
      g.add(0, dx);
      g.add(1, dgamma);
      if (has_beta) g.add(2, dbeta);
    });
  }
  return y;
}

}  // namespace

Tensor layernorm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps) {
  return normalize(x, gamma, beta, eps, false);
}
Tensor rmsnorm(const Tensor& x, const Tensor& gamma, double eps) { return normalize(x, gamma, Tensor(), eps, true); }

namespace cpu {

namespace {

// X is the activations' storage type, T = acc_t<X> the type of the math, the parameters and the
// row statistics (float for bf16 activations).
template <class X, class T = acc_t<X>>
ENGINE_SIMD_CLONES void normalize_rows(const X* __restrict x, const T* __restrict gamma, const T* __restrict beta,
                                       T eps, bool rms, int64_t rows, int64_t n, X* __restrict y, T* __restrict mean,
                                       T* __restrict rstd) {
  for (int64_t r = 0; r < rows; ++r) {
    const X* xr = x + r * n;
    X* yr = y + r * n;
    // One read pass: sums of x - K and (x - K)^2 with K = x[0], a sample of the row. Shifting
    // by a value near the mean keeps E[d^2] - E[d]^2 from cancelling (the header's pitfall).
    const T shift = rms || n == 0 ? T(0) : static_cast<T>(xr[0]);
    T s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
    for (int64_t j = 0; j < n; ++j) {
      const T d = static_cast<T>(xr[j]) - shift;
      s1 += d;
      s2 += d * d;
    }
    const T mean_d = rms ? T(0) : s1 / T(n);
    const T mu = shift + mean_d;
    T var = s2 / T(n) - mean_d * mean_d;
    var = var > T(0) ? var : T(0);
    const T inv = T(1) / std::sqrt(var + eps);
    mean[r] = mu;
    rstd[r] = inv;
    if (beta) {
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) yr[j] = (static_cast<T>(xr[j]) - mu) * inv * gamma[j] + beta[j];
    } else {
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) yr[j] = (static_cast<T>(xr[j]) - mu) * inv * gamma[j];
    }
  }
}

// dx: xhat = (x - mean) * rstd, g = dy * gamma,
// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)); RMSNorm has no mean(g) term.
template <class X, class T = acc_t<X>>
ENGINE_SIMD_CLONES void normalize_backward_rows(const X* __restrict x, const T* __restrict gamma,
                                                const T* __restrict mean, const T* __restrict rstd,
                                                const X* __restrict dy, bool rms, int64_t rows, int64_t n,
                                                X* __restrict dx) {
  for (int64_t r = 0; r < rows; ++r) {
    const X* xr = x + r * n;
    const X* dr = dy + r * n;
    X* out = dx + r * n;
    const T mu = mean[r], inv = rstd[r];
    T sum_g = 0, sum_gx = 0;
#pragma omp simd reduction(+ : sum_g, sum_gx)
    for (int64_t j = 0; j < n; ++j) {
      const T gj = static_cast<T>(dr[j]) * gamma[j];
      sum_g += gj;
      sum_gx += gj * (static_cast<T>(xr[j]) - mu) * inv;
    }
    const T mean_g = rms ? T(0) : sum_g / T(n), mean_gx = sum_gx / T(n);
#pragma omp simd
    for (int64_t j = 0; j < n; ++j)
      out[j] = inv * (static_cast<T>(dr[j]) * gamma[j] - mean_g - (static_cast<T>(xr[j]) - mu) * inv * mean_gx);
  }
}

// dgamma, dbeta over columns [c0, c1): each sum runs top to bottom in one thread, so the
// result is bit-identical whatever the thread count.
template <class X, class T = acc_t<X>>
ENGINE_SIMD_CLONES void scale_shift_grads(const X* __restrict x, const T* __restrict mean, const T* __restrict rstd,
                                          const X* __restrict dy, int64_t rows, int64_t n, int64_t c0, int64_t c1,
                                          T* __restrict dgamma, T* __restrict dbeta) {
  for (int64_t c = c0; c < c1; ++c) {
    dgamma[c] = 0;
    if (dbeta) dbeta[c] = 0;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const X* xr = x + r * n;
    const X* dr = dy + r * n;
    const T mu = mean[r], inv = rstd[r];
#pragma omp simd
    for (int64_t c = c0; c < c1; ++c) dgamma[c] += static_cast<T>(dr[c]) * (static_cast<T>(xr[c]) - mu) * inv;
    if (dbeta) {
#pragma omp simd
      for (int64_t c = c0; c < c1; ++c) dbeta[c] += static_cast<T>(dr[c]);
    }
  }
}

int64_t row_grain(int64_t n) { return std::max<int64_t>(1, 4096 / std::max<int64_t>(n, 1)); }

}  // namespace

void layernorm_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps, bool rms, Tensor& y,
                       Tensor& mean, Tensor& rstd) {
  const int64_t n = x.size(-1), rows = mean.numel();
  DISPATCH_FLOAT_BF16(x.dtype(), "layernorm", {
    using acc = acc_t<scalar_t>;
    const scalar_t* px = x.data<scalar_t>();
    const acc* pg = gamma.data<acc>();
    const acc* pb = beta.defined() ? beta.data<acc>() : nullptr;
    scalar_t* py = y.data<scalar_t>();
    acc* pm = mean.data<acc>();
    acc* pr = rstd.data<acc>();
    parallel_for(rows, row_grain(n), [&](int64_t b, int64_t e) {
      normalize_rows(px + b * n, pg, pb, static_cast<acc>(eps), rms, e - b, n, py + b * n, pm + b, pr + b);
    });
  });
}

void layernorm_backward(const Tensor& x, const Tensor& gamma, const Tensor& mean, const Tensor& rstd, const Tensor& dy,
                        bool rms, Tensor& dx, Tensor& dgamma, Tensor& dbeta) {
  const int64_t n = x.size(-1), rows = mean.numel();
  DISPATCH_FLOAT_BF16(x.dtype(), "layernorm_backward", {
    using acc = acc_t<scalar_t>;
    const scalar_t* px = x.data<scalar_t>();
    const acc* pg = gamma.data<acc>();
    const acc* pm = mean.data<acc>();
    const acc* pr = rstd.data<acc>();
    const scalar_t* pd = dy.data<scalar_t>();
    scalar_t* pdx = dx.data<scalar_t>();
    parallel_for(rows, row_grain(n), [&](int64_t b, int64_t e) {
      normalize_backward_rows(px + b * n, pg, pm + b, pr + b, pd + b * n, rms, e - b, n, pdx + b * n);
    });
    acc* pdg = dgamma.data<acc>();
    acc* pdb = dbeta.defined() ? dbeta.data<acc>() : nullptr;
    parallel_for(n, 16, [&](int64_t c0, int64_t c1) { scale_shift_grads(px, pm, pr, pd, rows, n, c0, c1, pdg, pdb); });
  });
}

}  // namespace cpu
}  // namespace engine
