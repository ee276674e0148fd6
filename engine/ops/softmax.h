// softmax, log_softmax and logsumexp over the last axis.
//
// Pitfall: every row subtracts its max before exp, so large logits (router logits before
// z-loss takes hold) do not overflow. A row of all -inf gives NaN, as in PyTorch.
#pragma once
#include "engine/core/tensor.h"

namespace engine {

Tensor softmax(const Tensor& x);      // same shape
Tensor log_softmax(const Tensor& x);  // same shape
Tensor logsumexp(const Tensor& x);    // [..., n] -> [...]

namespace cpu {
// x, y viewed as [rows, n]. log=true writes log_softmax.
void softmax_forward(const Tensor& x, bool log, Tensor& y);
// dx = y * (dy - sum(dy*y)) for softmax; dx = dy - exp(y) * sum(dy) for log_softmax.
void softmax_backward(const Tensor& y, const Tensor& dy, bool log, Tensor& dx);
void logsumexp_forward(const Tensor& x, Tensor& out);  // out [rows]
// dx[r, j] = dy[r] * exp(x[r, j] - lse[r])
void logsumexp_backward(const Tensor& x, const Tensor& lse, const Tensor& dy, Tensor& dx);
}  // namespace cpu
namespace cuda {
void softmax_forward(const Tensor& x, bool log, Tensor& y);
void softmax_backward(const Tensor& y, const Tensor& dy, bool log, Tensor& dx);
void logsumexp_forward(const Tensor& x, Tensor& out);
void logsumexp_backward(const Tensor& x, const Tensor& lse, const Tensor& dy, Tensor& dx);
}  // namespace cuda

}  // namespace engine
