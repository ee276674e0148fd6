// CUDA GEMM for matmul/linear: cuBLAS strided-batched S/DGEMM on row-major operands, plus a
// small kernel adding the bias row. cuBLAS is column-major, so C = op(A) op(B) is computed as
// C^T = op(B)^T op(A)^T: a row-major [r, c] buffer read column-major is its transpose.
#include <type_traits>

#include "engine/core/dispatch.h"
#include "engine/cuda/launch.cuh"
#include "engine/ops/copy.h"
#include "engine/ops/matmul.h"

namespace engine {
namespace cuda {

namespace {

// C is T (bf16 for bf16 activations), the bias acc_t<T> (f32: a parameter).
template <class T>
struct AddBiasFn {
  T* c;
  const acc_t<T>* bias;
  int64_t n;
  __device__ void operator()(int64_t i) const { c[i] = static_cast<acc_t<T>>(c[i]) + bias[i % n]; }
};

// A row-major product as cuBLAS (column-major) sees it. Row-major A ([m,k], or [k,m] when
// transposed) read column-major is A^T ([k,m]) or A ([m,k]); likewise B. So column-major
// C^T [n, m] = op(B)^T [n, k] * op(A)^T [k, m]: cuBLAS's first operand is our B.
struct ColumnMajor {
  int m, n, k, batch, ld_a, ld_b;
  cublasOperation_t op_a, op_b;
  long long stride_a, stride_b, stride_c;
  explicit ColumnMajor(const GemmArgs& g)
      : m(cublas_int(g.m, "gemm", "m")),
        n(cublas_int(g.n, "gemm", "n")),
        k(cublas_int(g.k, "gemm", "k")),
        batch(cublas_int(g.batch, "gemm", "batch")),
        ld_a(g.transpose_a ? m : k),
        ld_b(g.transpose_b ? k : n),
        op_a(g.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N),
        op_b(g.transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N),
        stride_a(static_cast<long long>(g.m) * g.k),
        stride_b(static_cast<long long>(g.k) * g.n),
        stride_c(static_cast<long long>(g.m) * g.n) {}
};

// bf16 operands (bf16 tensors), f32 sums, C in bf16 (an activation) or f32 (a weight's gradient,
// attention scores): cuBLAS's mixed-precision GEMM on tensor cores.
void gemm_bf16(const GemmArgs& g, const Tensor& a, const Tensor& b, Tensor& c) {
  ENGINE_CHECK(b.dtype() == DType::bf16 && (c.dtype() == DType::bf16 || c.dtype() == DType::f32), "gemm",
               "bf16 products take two bf16 operands and write bf16 or f32: " + a.str() + ", " + b.str() + " -> " +
                   c.str());
  const ColumnMajor l(g);
  const float alpha = 1.0f, beta = static_cast<float>(g.beta);
  const cudaDataType_t c_type = c.dtype() == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F;
  CUBLAS_CHECK(cublasGemmStridedBatchedEx(cublas_handle(), l.op_b, l.op_a, l.n, l.m, l.k, &alpha, b.raw_data(),
                                          CUDA_R_16BF, l.ld_b, l.stride_b, a.raw_data(), CUDA_R_16BF, l.ld_a,
                                          l.stride_a, &beta, c.raw_data(), c_type, l.n, l.stride_c, l.batch,
                                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

cublasStatus_t gemm_strided_batched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                    const float* alpha, const float* a, int lda, long long sa, const float* b, int ldb,
                                    long long sb, const float* beta, float* c, int ldc, long long sc, int batch) {
  return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch);
}
cublasStatus_t gemm_strided_batched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                    const double* alpha, const double* a, int lda, long long sa, const double* b,
                                    int ldb, long long sb, const double* beta, double* c, int ldc, long long sc,
                                    int batch) {
  return cublasDgemmStridedBatched(h, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch);
}

}  // namespace

void gemm(const GemmArgs& g, const Tensor& a, const Tensor& b, const Tensor& bias, Tensor& c) {
  ENGINE_CHECK(g.beta == 0.0 || g.beta == 1.0, "gemm", "beta must be 0 or 1");
  if (g.batch * g.m * g.n == 0) return;
  DeviceGuard guard(c.device());
  if (a.dtype() == DType::bf16) {
    if (g.k == 0) {
      if (g.beta == 0.0) fill(c, 0.0);
    } else {
      gemm_bf16(g, a, b, c);
    }
    if (bias.defined()) add_bias_rows(c, bias, g.batch * g.m, g.n);
    return;
  }
  DISPATCH_FLOAT(c.dtype(), "gemm", {
    scalar_t* pc = c.data<scalar_t>();
    if (g.k == 0) {
      // Empty inner sum: C = beta*C (+ bias). Not left to cuBLAS, whose k == 0 handling is
      // documented only as "C = beta*C".
      if (g.beta == 0.0) fill(c, 0.0);
    } else {
      const ColumnMajor l(g);
      const scalar_t alpha = 1, beta = static_cast<scalar_t>(g.beta);
      if (std::is_same<scalar_t, float>::value && g.precision == MatmulPrecision::bf16) {
        // f32 buffers, operands rounded to bf16 inside cuBLAS, f32 accumulation (tensor cores).
        CUBLAS_CHECK(cublasGemmStridedBatchedEx(cublas_handle(), l.op_b, l.op_a, l.n, l.m, l.k, &alpha,
                                                b.data<scalar_t>(), CUDA_R_32F, l.ld_b, l.stride_b, a.data<scalar_t>(),
                                                CUDA_R_32F, l.ld_a, l.stride_a, &beta, pc, CUDA_R_32F, l.n,
                                                l.stride_c, l.batch, CUBLAS_COMPUTE_32F_FAST_16BF,
                                                CUBLAS_GEMM_DEFAULT));
      } else {
        CUBLAS_CHECK(gemm_strided_batched(cublas_handle(), l.op_b, l.op_a, l.n, l.m, l.k, &alpha, b.data<scalar_t>(),
                                          l.ld_b, l.stride_b, a.data<scalar_t>(), l.ld_a, l.stride_a, &beta, pc, l.n,
                                          l.stride_c, l.batch));
      }
    }
  });
  if (bias.defined()) add_bias_rows(c, bias, g.batch * g.m, g.n);
}

void add_bias_rows(Tensor& c, const Tensor& bias, int64_t rows, int64_t n) {
  DeviceGuard guard(c.device());
  DISPATCH_FLOAT_BF16(c.dtype(), "gemm bias", {
    launch_elementwise(rows * n, AddBiasFn<scalar_t>{c.data<scalar_t>(), bias.data<acc_t<scalar_t>>(), n});
  });
}

}  // namespace cuda
}  // namespace engine
