// Cross-entropy from logits, fused with log-softmax: loss = mean over rows whose target is not
// ignore_index of (logsumexp(logits_row) - logits_row[target]).
//
// The [rows, V] probabilities are never stored: forward keeps one logsumexp per row and
// backward recomputes softmax from the logits. If every target is ignored the loss is 0 with a
// zero gradient (PyTorch returns NaN there; a masked-out micro-batch should not poison a run).
// Targets outside [0, V) that are not ignore_index are an error.
#pragma once
#include "engine/core/tensor.h"

namespace engine {

// logits [..., V] (f32/f64), targets [...] (i32) -> shape {1}
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int32_t ignore_index = -100);

namespace cpu {
// logits [rows, V]; writes lse [rows] and returns (sum of row losses, number of counted rows).
// Throws naming the first bad target.
void cross_entropy_forward(const Tensor& logits, const Tensor& targets, int32_t ignore_index, Tensor& lse,
                           double* loss_sum, int64_t* count);
// dlogits = grad_scale * (softmax - onehot(target)) for counted rows, 0 for ignored rows.
void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse, int32_t ignore_index,
                            double grad_scale, Tensor& dlogits);
}  // namespace cpu
namespace cuda {
void cross_entropy_forward(const Tensor& logits, const Tensor& targets, int32_t ignore_index, Tensor& lse,
                           double* loss_sum, int64_t* count);
void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse, int32_t ignore_index,
                            double grad_scale, Tensor& dlogits);
}  // namespace cuda

}  // namespace engine
