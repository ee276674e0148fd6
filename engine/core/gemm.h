// What a GEMM kernel is asked to do, on either backend. The ops (matmul, linear, grouped_linear,
// attention) fill these in; the backends run them: engine/cpu/onednn_gemm (oneDNN) on the CPU,
// cuBLAS in engine/ops/matmul.cu and grouped_linear.cu. Kept here, below both, so a backend
// needs no op header.
#pragma once
#include <cstdint>

#include "engine/core/tensor.h"

namespace engine {

// f32: products in f32. bf16: both operands rounded to bfloat16, products summed in f32 (see
// engine/ops/matmul.h). f64 products are always exact.
enum class MatmulPrecision : uint8_t { f32, bf16 };

// C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b] for b < batch; A, B, C contiguous,
// stored row-major as given (A is [M,K] or, transposed, [K,M]). bias (optional, [N]) is added
// to every row of C. beta is 0 or 1.
struct GemmArgs {
  int64_t batch = 1, m = 0, n = 0, k = 0;
  bool transpose_a = false, transpose_b = false;
  double beta = 0.0;
  MatmulPrecision precision = MatmulPrecision::f32;  // bf16 applies to f32 operands only
};

// One product of a set: c = op(a) op(b) (+ bias rows), args.batch == 1, each tensor's data
// pointer where its matrix starts (views into larger tensors allowed).
struct GemmCall {
  GemmArgs args;
  Tensor a, b, bias, c;
};

}  // namespace engine
