// Matrix products: matmul (2-D and batched 3-D, any transpose combination) and linear.
//
// CPU: oneDNN's matmul primitive, cached by shape (engine/cpu/onednn_gemm.h, the CPU GEMM
// backend). f64 (used by gradient checks) runs a plain blocked loop.
// CUDA: cuBLAS (strided batched for 3-D).
//
// Precision: f32 products run in f32, or, under MatmulPrecision::bf16, with both operands
// rounded to bfloat16 (8-bit mantissa) and the products summed in f32: the tensors stay f32
// (master weights, activations, gradients), only the GEMM inputs are rounded. CPU: operands
// converted to bf16 (round to nearest even) for oneDNN's AMX / AVX512-BF16 kernels; CUDA:
// cuBLAS's CUBLAS_COMPUTE_32F_FAST_16BF on the f32 buffers. f64 products are always exact.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/gemm.h"
#include "engine/core/tensor.h"

namespace engine {

const char* precision_name(MatmulPrecision p);

// The precision of this thread's f32 products; f32 unless a scope says otherwise. A product's
// backward runs at the precision its forward ran at, wherever backward() is called.
MatmulPrecision matmul_precision();
class MatmulPrecisionScope {
 public:
  explicit MatmulPrecisionScope(MatmulPrecision p);
  ~MatmulPrecisionScope();
  MatmulPrecisionScope(const MatmulPrecisionScope&) = delete;
  MatmulPrecisionScope& operator=(const MatmulPrecisionScope&) = delete;

 private:
  MatmulPrecision previous_;
};

// op(a) @ op(b), op = transpose when the flag is set (the last two axes).
// Shapes: a [M,K] b [K,N] -> [M,N]; a [B,M,K] b [B,K,N] -> [B,M,N];
// a [..., M, K] with b 2-D -> the leading axes of a are folded into M (a weight shared by all).
Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a = false, bool transpose_b = false);

// y = x @ weight^T + bias, weight [out, in] (PyTorch's layout), x [..., in]; bias optional.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// Args for C[b] = op(A[b]) op(B[b]) over `batch` contiguous matrices, at this thread's precision
// (the attention kernels' and grouped_linear's products on both backends).
inline GemmArgs batched_gemm_args(int64_t batch, int64_t m, int64_t n, int64_t k, bool ta, bool tb) {
  GemmArgs g;
  g.batch = batch;
  g.m = m;
  g.n = n;
  g.k = k;
  g.transpose_a = ta;
  g.transpose_b = tb;
  g.precision = matmul_precision();
  return g;
}

namespace cpu {
// Independent products at once (the experts' GEMMs): small f32 ones run concurrently, one per
// thread, each single-threaded - they use the cores better side by side than one after another
// with every core on each (1.2-1.4x at 64 rows); large ones, and anything not plain f32, run
// one by one through gemm(). Same values as gemm() up to the summation order. (The side-by-side
// runner is the oneDNN backend's try_gemm_concurrent, engine/cpu/onednn_gemm.h.)
void gemm_concurrent(const std::vector<GemmCall>& calls);
void gemm(const GemmArgs& args, const Tensor& a, const Tensor& b, const Tensor& bias, Tensor& c);
}  // namespace cpu
namespace cuda {
void gemm(const GemmArgs& args, const Tensor& a, const Tensor& b, const Tensor& bias, Tensor& c);
// c[r, j] += bias[j] for the first `rows` rows of the contiguous [rows, n] block at c.
void add_bias_rows(Tensor& c, const Tensor& bias, int64_t rows, int64_t n);
}  // namespace cuda

}  // namespace engine
