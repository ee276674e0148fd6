// Grouped linear: consecutive row blocks of one input, each through its own weight (the MoE
// experts' products, one op per layer instead of one per expert).
//
// x [rows, in]; offsets [G + 1], nondecreasing from 0 to rows: group g owns rows
// offsets[g]..offsets[g+1]-1. weights: G tensors [out, in]; biases: none, or G tensors [out].
//   y[r] = x[r] W_g^T + b_g  for r in group g          y: [rows, out]
// Backward: dX_g = dY_g W_g, dW_g = dY_g^T X_g, db_g = column sums of dY_g. A group without rows
// computes nothing and its weight and bias receive no gradient, exactly as if that expert had
// not been called (AdamW then leaves it alone, as PyTorch does for a parameter without grad).
// CPU: one oneDNN product per non-empty group (rows vary every step: see matmul.cpp's cache).
// CUDA: one grouped cuBLAS call (cublas{S,D}gemmGroupedBatched) per product for all groups
// (bf16: one grouped call too where cuBLAS takes the bf16 compute mode, else one call per group).
#pragma once
#include <vector>

#include "engine/core/tensor.h"
#include "engine/ops/matmul.h"

namespace engine {

Tensor grouped_linear(const Tensor& x, const std::vector<int64_t>& offsets, const std::vector<Tensor>& weights,
                      const std::vector<Tensor>& biases = {});

// Kernel contract (both backends): runs every product of `groups` (GemmCall, matmul.h), all of
// one dtype, device, transposes, beta and precision; sizes may differ. Products with m, n or
// k == 0 are handled as gemm() handles them.
namespace cpu {
void grouped_gemm(const std::vector<GemmCall>& groups);
}
namespace cuda {
void grouped_gemm(const std::vector<GemmCall>& groups);
// How the products were run so far on this process: grouped cuBLAS calls, and products run one
// by one (a single group, a cuBLAS older than 12.5, or bf16 where cuBLAS refuses the grouped
// bf16 compute mode). The CUDA tests check the path.
struct GroupedGemmCounts {
  int64_t grouped_calls = 0, one_by_one = 0;
};
GroupedGemmCounts grouped_gemm_counts();
}  // namespace cuda

}  // namespace engine
