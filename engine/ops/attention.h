// Causal scaled-dot-product attention: out = softmax(q k^T * scale + causal mask) v.
//
// q, k, v, out: [B, H, T, D]; query t attends to keys 0..t. scale = 1/sqrt(D) by default.
// CPU: oneDNN batched products over all (batch, head) pairs around a fused causal softmax.
// CUDA: cuBLAS strided-batched GEMMs around a masked softmax. Both compute the probabilities
// P [B, H, T, T] in forward; when it needs a gradient and P fits the kept-probabilities budget
// (256 MB over all calls by default, set_attention_saved_probs_limit), P is kept for backward, which
// then skips recomputing S = Q K^T and the softmax; otherwise only one log-sum-exp per query
// row is kept and backward recomputes P from it (as FlashAttention does).
#pragma once
#include "engine/core/tensor.h"

namespace engine {

Tensor causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale = 0.0);  // 0: 1/sqrt(D)

// The most bytes of probabilities kept for backward at any one time, over all attention calls
// of the process (0: never keep, always recompute); returns the previous limit. A call whose
// P would take the kept total past it recomputes instead.
int64_t set_attention_saved_probs_limit(int64_t bytes);
// Bytes of probabilities kept for backward right now.
int64_t attention_saved_probs_bytes();

// Kernel contract (both backends): every tensor is contiguous [B, H, T, D] (lse [B, H, T],
// probs [B, H, T, T]), all of one float dtype; scale is already resolved (never 0 here).
// Forward writes out, lse and P (0 above the diagonal) into probs. Backward reads P from probs
// when it is defined, else recomputes it from lse; it overwrites dq, dk and dv whole (they
// need no zero fill).
namespace cpu {
void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, double scale, Tensor& out, Tensor& lse,
                       Tensor& probs);
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        const Tensor& probs, const Tensor& dout, double scale, Tensor& dq, Tensor& dk, Tensor& dv);
}  // namespace cpu
namespace cuda {
void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, double scale, Tensor& out, Tensor& lse,
                       Tensor& probs);
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        const Tensor& probs, const Tensor& dout, double scale, Tensor& dq, Tensor& dk, Tensor& dv);
}  // namespace cuda

}  // namespace engine
