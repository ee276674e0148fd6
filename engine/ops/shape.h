// Reshape, transpose, permute, slice and concat.
//
// reshape of contiguous data, transpose, permute and slice return views (no copy); their
// gradients are views or copies of the incoming gradient. concat copies.
#pragma once
#include <vector>

#include "engine/core/tensor.h"

namespace engine {

Tensor reshape(const Tensor& x, const Shape& shape);  // one dimension may be -1
Tensor flatten_rows(const Tensor& x);                 // [..., n] -> [prod(...), n]
Tensor transpose(const Tensor& x, int axis0, int axis1);
Tensor permute(const Tensor& x, const std::vector<int>& order);
Tensor slice(const Tensor& x, int axis, int64_t start, int64_t end);  // [start, end)
Tensor concat(const std::vector<Tensor>& parts, int axis);

}  // namespace engine
