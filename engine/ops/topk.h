// Top-k over the last axis: the k largest values, sorted descending, and their indices (i32).
// Ties go to the lower index, so routing is deterministic. The gradient flows to the selected
// positions only (indices carry none).
// k must lie in [1, n], n the size of the last axis. NaN ranks below every number (-inf
// included): it is picked only when fewer than k non-NaN entries exist, NaNs by lower index.
#pragma once
#include <utility>

#include "engine/core/tensor.h"

namespace engine {

struct TopK {
  Tensor values;   // [..., k], differentiable
  Tensor indices;  // [..., k], i32
};

TopK topk(const Tensor& x, int64_t k);

namespace cpu {
void topk_forward(const Tensor& x, int64_t k, Tensor& values, Tensor& indices);
// dx = 0 except dx[row, indices[row, j]] = dvalues[row, j]. The caller zero-fills dx.
void topk_backward(const Tensor& indices, const Tensor& dvalues, Tensor& dx);
}  // namespace cpu
namespace cuda {
void topk_forward(const Tensor& x, int64_t k, Tensor& values, Tensor& indices);
void topk_backward(const Tensor& indices, const Tensor& dvalues, Tensor& dx);
}  // namespace cuda

}  // namespace engine
