// Row gather and scatter-add by an index vector: the MoE dispatch and combine, and the
// embedding lookup.
//
//   gather_rows(x [N, d], index [M])                       -> [M, d],  out[i] = x[index[i]]
//   scatter_add_rows(src [M, d], index [M], N, weight [M]) -> [N, d],  out[index[i]] += weight[i] * src[i]
//   embedding(table [V, d], ids [...])                     -> [..., d]
//
// Gradients: gather's is a scatter-add and vice versa; the weight's is the row dot product.
// Pitfall: scatter-add with repeated indices must not race. The CPU kernel splits the work by
// columns, so each output element is summed by one thread in index order (deterministic);
// CUDA uses atomics (deterministic up to float addition order).
// Indices outside [0, N) are an error (checked on the CPU; on CUDA they are skipped).
#pragma once
#include "engine/core/tensor.h"

namespace engine {

Tensor gather_rows(const Tensor& x, const Tensor& index);
Tensor scatter_add_rows(const Tensor& src, const Tensor& index, int64_t num_rows, const Tensor& weight = Tensor());
Tensor embedding(const Tensor& table, const Tensor& ids);

namespace cpu {
void gather_rows(const Tensor& x, const Tensor& index, Tensor& out);
// out[i] = weight[i] * x[index[i]]: scatter_add_rows' gradient of its rows in one pass.
void gather_rows_scaled(const Tensor& x, const Tensor& index, const Tensor& weight, Tensor& out);
// out must be zeroed (or hold values to add to); weight optional.
void scatter_add_rows(const Tensor& src, const Tensor& index, const Tensor& weight, Tensor& out);
// dweight[i] = dot(dout[index[i]], src[i])
void rows_dot(const Tensor& dout, const Tensor& index, const Tensor& src, Tensor& dweight);
}  // namespace cpu
namespace cuda {
void gather_rows(const Tensor& x, const Tensor& index, Tensor& out);
void gather_rows_scaled(const Tensor& x, const Tensor& index, const Tensor& weight, Tensor& out);
void scatter_add_rows(const Tensor& src, const Tensor& index, const Tensor& weight, Tensor& out);
void rows_dot(const Tensor& dout, const Tensor& index, const Tensor& src, Tensor& dweight);
}  // namespace cuda

}  // namespace engine
