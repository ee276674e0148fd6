// CUDA LayerNorm / RMSNorm over the last axis: one block per row for the forward and for dx,
// and the deterministic column-sum kernel (reduce.cuh) for dgamma and dbeta.
#include "engine/core/dispatch.h"
#include "engine/cuda/reduce.cuh"
#include "engine/ops/norm.h"

namespace engine {
namespace cuda {

namespace {

// Pitfall: the variance is a second pass around the mean (never E[x^2] - E[x]^2, which cancels
// in float when |mean| >> std). Row sums accumulate in double.
// X: the activations' storage type; T = acc_t<X>: the math's, the parameters' and the row
// statistics' (f32 for bf16 activations).
template <class X, class T = acc_t<X>>
__global__ void norm_forward_kernel(const X* x, const T* gamma, const T* beta, int64_t rows, int64_t n, double eps,
                                    bool rms, X* y, T* mean, T* rstd) {
  CUDA_ROW_LOOP(r, rows) {
    const X* xr = x + r * n;
    X* yr = y + r * n;
    double mu = 0.0;
    if (!rms) {
      double s = 0.0;
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) s += static_cast<double>(xr[j]);
      mu = block_sum(s) / static_cast<double>(n);
    }
    double v = 0.0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const double d = static_cast<double>(static_cast<T>(xr[j])) - mu;
      v += d * d;
    }
    const double var = block_sum(v) / static_cast<double>(n);
    const T mu_t = static_cast<T>(mu), inv = static_cast<T>(1.0 / sqrt(var + eps));
    if (threadIdx.x == 0) {
      mean[r] = mu_t;  // 0 for RMSNorm: backward then reads x - 0
      rstd[r] = inv;
    }
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
      yr[j] = (static_cast<T>(xr[j]) - mu_t) * inv * gamma[j] + (beta ? beta[j] : T(0));
  }
}

// xhat = (x - mean) * rstd, g = dy * gamma: dx = rstd * (g - mean(g) - xhat * mean(g * xhat));
// RMSNorm has no mean(g) term.
template <class X, class T = acc_t<X>>
__global__ void norm_backward_dx_kernel(const X* x, const T* gamma, const T* mean, const T* rstd, const X* dy,
                                        int64_t rows, int64_t n, bool rms, X* dx) {
  CUDA_ROW_LOOP(r, rows) {
    const X* xr = x + r * n;
    const X* dr = dy + r * n;
    const T mu = mean[r], inv = rstd[r];
    double sum_g = 0.0, sum_gx = 0.0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const T g = static_cast<T>(dr[j]) * gamma[j];
      sum_g += static_cast<double>(g);
      sum_gx += static_cast<double>(g * (static_cast<T>(xr[j]) - mu) * inv);
    }
    sum_g = block_sum(sum_g);
    sum_gx = block_sum(sum_gx);
    const T mean_g = rms ? T(0) : static_cast<T>(sum_g / static_cast<double>(n));
    const T mean_gx = static_cast<T>(sum_gx / static_cast<double>(n));
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const T xhat = (static_cast<T>(xr[j]) - mu) * inv;
      dx[r * n + j] = inv * (static_cast<T>(dr[j]) * gamma[j] - mean_g - xhat * mean_gx);
    }
  }
}

// Rows form the middle axis of [1, rows, n]: column c of dgamma sums dy * xhat down the rows.
// X: the activations' type, T: the statistics' and the sums' (f32 for bf16 activations).
template <class X, class T>
struct DgammaLoad {
  const X* x;
  const X* dy;
  const T* mean;
  const T* rstd;
  int64_t n;
  __device__ T operator()(int64_t, int64_t row, int64_t c) const {
    const int64_t i = row * n + c;
    return static_cast<T>(dy[i]) * (static_cast<T>(x[i]) - mean[row]) * rstd[row];
  }
};

template <class X, class T>
struct DbetaLoad {
  const X* dy;
  int64_t n;
  __device__ T operator()(int64_t, int64_t row, int64_t c) const { return static_cast<T>(dy[row * n + c]); }
};

template <class T>
struct VectorStore {
  T* out;
  __device__ void operator()(int64_t, int64_t c, double total) const { out[c] = static_cast<T>(total); }
};

}  // namespace

void layernorm_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps, bool rms, Tensor& y,
                       Tensor& mean, Tensor& rstd) {
  const int64_t n = x.size(-1), rows = mean.numel();
  if (rows == 0 || n == 0) return;
  DeviceGuard guard(x.device());
  DISPATCH_FLOAT_BF16(x.dtype(), "layernorm", {
    using acc = acc_t<scalar_t>;
    norm_forward_kernel<<<row_blocks(rows), row_threads(n), 0, stream()>>>(
        x.data<scalar_t>(), gamma.data<acc>(), beta.defined() ? beta.data<acc>() : nullptr, rows, n, eps, rms,
        y.data<scalar_t>(), mean.data<acc>(), rstd.data<acc>());
    CUDA_CHECK_LAUNCH();
  });
}

void layernorm_backward(const Tensor& x, const Tensor& gamma, const Tensor& mean, const Tensor& rstd, const Tensor& dy,
                        bool rms, Tensor& dx, Tensor& dgamma, Tensor& dbeta) {
  const int64_t n = x.size(-1), rows = mean.numel();
  DeviceGuard guard(x.device());
  DISPATCH_FLOAT_BF16(x.dtype(), "layernorm_backward", {
    using acc = acc_t<scalar_t>;
    const scalar_t* px = x.data<scalar_t>();
    const acc* pm = mean.data<acc>();
    const acc* pr = rstd.data<acc>();
    const scalar_t* pd = dy.data<scalar_t>();
    if (rows > 0 && n > 0) {
      norm_backward_dx_kernel<<<row_blocks(rows), row_threads(n), 0, stream()>>>(px, gamma.data<acc>(), pm, pr, pd,
                                                                                 rows, n, rms, dx.data<scalar_t>());
      CUDA_CHECK_LAUNCH();
    }
    // With rows == 0 the column sums still run and write zeros.
    launch_column_sum(1, rows, n, DgammaLoad<scalar_t, acc>{px, pd, pm, pr, n},
                      VectorStore<acc>{dgamma.data<acc>()});
    if (dbeta.defined())
      launch_column_sum(1, rows, n, DbetaLoad<scalar_t, acc>{pd, n}, VectorStore<acc>{dbeta.data<acc>()});
  });
}

}  // namespace cuda
}  // namespace engine
