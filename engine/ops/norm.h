// LayerNorm and RMSNorm over the last axis, with a learned scale (and shift for LayerNorm).
//
// Pitfall: E[x^2] - E[x]^2 cancels catastrophically in float when |mean| >> std. The CPU
// kernel sums x - K and (x - K)^2 with K = the row's first element (a value near the mean),
// which keeps one pass over the row and the cancellation bounded by ((mean - K)/std)^2.
#pragma once
#include "engine/core/tensor.h"

namespace engine {

// y = (x - mean) / sqrt(var + eps) * gamma + beta; gamma, beta [n]; beta optional.
Tensor layernorm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps = 1e-5);
// y = x / sqrt(mean(x^2) + eps) * gamma
Tensor rmsnorm(const Tensor& x, const Tensor& gamma, double eps = 1e-6);

namespace cpu {
// x, y [rows, n]; mean and rstd [rows] are saved for backward (mean unused by RMSNorm).
void layernorm_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps, bool rms, Tensor& y,
                       Tensor& mean, Tensor& rstd);
// dgamma, dbeta are written (not accumulated); dbeta ignored when undefined.
void layernorm_backward(const Tensor& x, const Tensor& gamma, const Tensor& mean, const Tensor& rstd, const Tensor& dy,
                        bool rms, Tensor& dx, Tensor& dgamma, Tensor& dbeta);
}  // namespace cpu
namespace cuda {
void layernorm_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps, bool rms, Tensor& y,
                       Tensor& mean, Tensor& rstd);
void layernorm_backward(const Tensor& x, const Tensor& gamma, const Tensor& mean, const Tensor& rstd, const Tensor& dy,
                        bool rms, Tensor& dx, Tensor& dgamma, Tensor& dbeta);
}  // namespace cuda

}  // namespace engine
