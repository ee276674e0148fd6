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
  check(is_floating(x_in.dtype()) && x_in.ndim() >= 1, name, "needs a floating tensor, got " + x_in.str());
  const int64_t n = x_in.size(-1);
  check(gamma_in.defined() && gamma_in.shape() == Shape{n}, name,
        "scale must have shape (" + std::to_string(n) + "), got " + gamma_in.str());
  check(!beta_in.defined() || beta_in.shape() == Shape{n}, name,
        "shift must have shape (" + std::to_string(n) + "), got " + beta_in.str());
  check(eps > 0, name, "eps must be positive");
  Tensor x = kernel_input(x_in), gamma = kernel_input(gamma_in);
  Tensor beta = beta_in.defined() ? kernel_input(beta_in) : Tensor();
  const int64_t rows = n ? x.numel() / n : 0;
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mean = Tensor::empty({rows}, x.dtype(), x.device()), rstd = Tensor::empty({rows}, x.dtype(), x.device());
  ON_DEVICE(x, layernorm_forward, x, gamma, beta, eps, rms, y, mean, rstd);
  if (needs_grad({x_in, gamma_in, beta_in})) {
    const bool has_beta = beta.defined();
    record(y, {x_in, gamma_in, beta_in}, [=](const Tensor& dy, GradSink& g) {
      Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
      Tensor dgamma = Tensor::empty(gamma.shape(), x.dtype(), x.device());
      Tensor dbeta = has_beta ? Tensor::empty(gamma.shape(), x.dtype(), x.device()) : Tensor();
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

void layernorm_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps, bool rms, Tensor& y,
                       Tensor& mean, Tensor& rstd) {
  const int64_t n = x.size(-1), rows = mean.numel();
  DISPATCH_FLOAT(x.dtype(), "layernorm", {
    const scalar_t* px = x.data<scalar_t>();
    const scalar_t* pg = gamma.data<scalar_t>();
    const scalar_t* pb = beta.defined() ? beta.data<scalar_t>() : nullptr;
    scalar_t* py = y.data<scalar_t>();
    scalar_t* pm = mean.data<scalar_t>();
    scalar_t* pr = rstd.data<scalar_t>();
    parallel_for(rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(n, 1)), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const scalar_t* xr = px + r * n;
        scalar_t* yr = py + r * n;
        scalar_t mu = 0;
        if (!rms) {
          for (int64_t j = 0; j < n; ++j) mu += xr[j];
          mu /= scalar_t(n);
        }
        scalar_t var = 0;  // second pass around the mean (see the header's pitfall)
        for (int64_t j = 0; j < n; ++j) var += (xr[j] - mu) * (xr[j] - mu);
        var /= scalar_t(n);
        const scalar_t inv = scalar_t(1) / std::sqrt(var + scalar_t(eps));
        pm[r] = mu;
        pr[r] = inv;
        for (int64_t j = 0; j < n; ++j) yr[j] = (xr[j] - mu) * inv * pg[j] + (pb ? pb[j] : scalar_t(0));
      }
    });
  });
}

void layernorm_backward(const Tensor& x, const Tensor& gamma, const Tensor& mean, const Tensor& rstd, const Tensor& dy,
                        bool rms, Tensor& dx, Tensor& dgamma, Tensor& dbeta) {
  const int64_t n = x.size(-1), rows = mean.numel();
  DISPATCH_FLOAT(x.dtype(), "layernorm_backward", {
    const scalar_t* px = x.data<scalar_t>();
    const scalar_t* pg = gamma.data<scalar_t>();
    const scalar_t* pm = mean.data<scalar_t>();
    const scalar_t* pr = rstd.data<scalar_t>();
    const scalar_t* pd = dy.data<scalar_t>();
    scalar_t* pdx = dx.data<scalar_t>();
    // dx: xhat = (x - mean) * rstd, g = dy * gamma,
    // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)); RMSNorm has no mean(g) term.
    parallel_for(rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(n, 1)), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const scalar_t* xr = px + r * n;
        const scalar_t* dr = pd + r * n;
        scalar_t* out = pdx + r * n;
        const scalar_t mu = pm[r], inv = pr[r];
        scalar_t sum_g = 0, sum_gx = 0;
        for (int64_t j = 0; j < n; ++j) {
          const scalar_t gj = dr[j] * pg[j];
          sum_g += gj;
          sum_gx += gj * (xr[j] - mu) * inv;
        }
        const scalar_t mean_g = rms ? scalar_t(0) : sum_g / scalar_t(n), mean_gx = sum_gx / scalar_t(n);
        for (int64_t j = 0; j < n; ++j) {
          const scalar_t xhat = (xr[j] - mu) * inv;
          out[j] = inv * (dr[j] * pg[j] - mean_g - xhat * mean_gx);
        }
      }
    });
    // dgamma, dbeta: split by columns so each sum runs top to bottom in one thread
    // (bit-identical whatever the thread count).
    scalar_t* pdg = dgamma.data<scalar_t>();
    scalar_t* pdb = dbeta.defined() ? dbeta.data<scalar_t>() : nullptr;
    parallel_for(n, 16, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        pdg[c] = 0;
        if (pdb) pdb[c] = 0;
      }
      for (int64_t r = 0; r < rows; ++r) {
        const scalar_t* xr = px + r * n;
        const scalar_t* dr = pd + r * n;
        const scalar_t mu = pm[r], inv = pr[r];
        for (int64_t c = c0; c < c1; ++c) pdg[c] += dr[c] * (xr[c] - mu) * inv;
        if (pdb)
          for (int64_t c = c0; c < c1; ++c) pdb[c] += dr[c];
      }
    });
  });
}

}  // namespace cpu
}  // namespace engine
