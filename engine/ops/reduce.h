// Sum and mean over one axis (or all elements).
//
// Pitfall: float sums over long axes lose precision; each output element accumulates in double
// on the CPU and in a fixed-shape tree on CUDA, so results do not depend on the thread count.
#pragma once
#include <vector>

#include "engine/core/tensor.h"

namespace engine {

Tensor sum(const Tensor& x, int axis, bool keepdim = false);
Tensor mean(const Tensor& x, int axis, bool keepdim = false);
Tensor sum_all(const Tensor& x);   // shape {1}
Tensor mean_all(const Tensor& x);  // shape {1}
// sum(x^2) as an f64 tensor of shape {1}, each square and the sum in double: gradient norms
// without an f64 copy of every gradient (an f32 square of a huge gradient would overflow).
// Summed in fixed chunks in a fixed order, so the result does not depend on the thread count.
Tensor sum_squares(const Tensor& x);

// f64 {n}: entry i is sum_squares(xs[i]), all on xs[0]'s device (every xs[i] must be there),
// written into one buffer so a caller that needs all of them (gradient clipping) reads them
// back with one copy instead of one wait per tensor. Not recorded for autodiff.
Tensor sum_squares_each(const std::vector<Tensor>& xs);

namespace cpu {
// x contiguous viewed as [outer, n, inner]; out [outer, inner] = scale * sum over n.
void reduce_sum(const Tensor& x, int64_t outer, int64_t n, int64_t inner, double scale, Tensor& out);
// dy [outer, inner] -> dx [outer, n, inner] = scale * dy repeated over n.
void expand_middle(const Tensor& dy, int64_t outer, int64_t n, int64_t inner, double scale, Tensor& dx);
// x contiguous; out: f64 {1}.
void sum_squares(const Tensor& x, Tensor& out);
}  // namespace cpu
namespace cuda {
void reduce_sum(const Tensor& x, int64_t outer, int64_t n, int64_t inner, double scale, Tensor& out);
void expand_middle(const Tensor& dy, int64_t outer, int64_t n, int64_t inner, double scale, Tensor& dx);
void sum_squares(const Tensor& x, Tensor& out);
}  // namespace cuda

}  // namespace engine
