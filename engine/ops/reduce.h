// Sum and mean over one axis (or all elements).
//
// Pitfall: float sums over long axes lose precision; each output element accumulates in double
// on the CPU and in a fixed-shape tree on CUDA, so results do not depend on the thread count.
#pragma once
#include "engine/core/tensor.h"

namespace engine {

Tensor sum(const Tensor& x, int axis, bool keepdim = false);
Tensor mean(const Tensor& x, int axis, bool keepdim = false);
Tensor sum_all(const Tensor& x);   // shape {1}
Tensor mean_all(const Tensor& x);  // shape {1}

namespace cpu {
// x contiguous viewed as [outer, n, inner]; out [outer, inner] = scale * sum over n.
void reduce_sum(const Tensor& x, int64_t outer, int64_t n, int64_t inner, double scale, Tensor& out);
// dy [outer, inner] -> dx [outer, n, inner] = scale * dy repeated over n.
void expand_middle(const Tensor& dy, int64_t outer, int64_t n, int64_t inner, double scale, Tensor& dx);
}  // namespace cpu
namespace cuda {
void reduce_sum(const Tensor& x, int64_t outer, int64_t n, int64_t inner, double scale, Tensor& out);
void expand_middle(const Tensor& dy, int64_t outer, int64_t n, int64_t inner, double scale, Tensor& dx);
}  // namespace cuda

}  // namespace engine
