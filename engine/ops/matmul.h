// Matrix products: matmul (2-D and batched 3-D, any transpose combination) and linear.
//
// CPU: oneDNN's matmul primitive, cached by shape (creating one costs 0.1-0.35 ms, far more
// than a small GEMM). f64 (used by gradient checks) runs a plain blocked loop.
// CUDA: cuBLAS (strided batched for 3-D).
#pragma once
#include "engine/core/tensor.h"

namespace engine {

// op(a) @ op(b), op = transpose when the flag is set (the last two axes).
// Shapes: a [M,K] b [K,N] -> [M,N]; a [B,M,K] b [B,K,N] -> [B,M,N];
// a [..., M, K] with b 2-D -> the leading axes of a are folded into M (a weight shared by all).
Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a = false, bool transpose_b = false);

// y = x @ weight^T + bias, weight [out, in] (PyTorch's layout), x [..., in]; bias optional.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b] for b < batch; A, B, C contiguous,
// stored row-major as given (A is [M,K] or, transposed, [K,M]). bias (optional, [N]) is added
// to every row of C. beta is 0 or 1.
struct GemmArgs {
  int64_t batch = 1, m = 0, n = 0, k = 0;
  bool transpose_a = false, transpose_b = false;
  double beta = 0.0;
};

namespace cpu {
void gemm(const GemmArgs& args, const Tensor& a, const Tensor& b, const Tensor& bias, Tensor& c);
}  // namespace cpu
namespace cuda {
void gemm(const GemmArgs& args, const Tensor& a, const Tensor& b, const Tensor& bias, Tensor& c);
}  // namespace cuda

}  // namespace engine
