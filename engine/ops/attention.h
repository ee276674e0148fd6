// Causal scaled-dot-product attention: out = softmax(q k^T * scale + causal mask) v.
//
// q, k, v, out: [B, H, T, D]; query t attends to keys 0..t. scale = 1/sqrt(D) by default.
// CPU: fused, parallel over (batch, head); the [T, T] score matrix is never stored: forward
// saves one logsumexp per query row and backward recomputes the probabilities (as
// FlashAttention does). CUDA: cuBLAS strided-batched GEMMs around a masked softmax.
#pragma once
#include "engine/core/tensor.h"

namespace engine {

Tensor causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale = 0.0);  // 0: 1/sqrt(D)

// Kernel contract (both backends): every tensor is contiguous [B, H, T, D] (lse [B, H, T]),
// all of one float dtype; scale is already resolved (never 0 here). The backward overwrites
// dq, dk and dv whole (they need no zero fill).
namespace cpu {
// lse [B, H, T] is written for backward.
void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, double scale, Tensor& out, Tensor& lse);
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        const Tensor& dout, double scale, Tensor& dq, Tensor& dk, Tensor& dv);
}  // namespace cpu
namespace cuda {
void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, double scale, Tensor& out, Tensor& lse);
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        const Tensor& dout, double scale, Tensor& dq, Tensor& dk, Tensor& dv);
}  // namespace cuda

}  // namespace engine
