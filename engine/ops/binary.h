// Elementwise add, sub, mul, div of two tensors, and affine maps by scalars.
//
// Broadcasting follows NumPy (axes aligned at the end; sizes equal or 1). The common forms run
// straight in the kernels: one operand's shape a suffix of the other's (a bias row [n] against
// [m, n], a position table [T, d] against [B, T, d]) or a single element repeats with period
// numel(smaller) over the flat output. Other forms (a column [m, 1] against [m, n]) materialize
// the expanded operand first. Gradients sum over the repeats.
#pragma once
#include "engine/core/hostdevice.h"
#include "engine/core/tensor.h"

namespace engine {

enum class BinaryOp : uint8_t { add, sub, mul, div };

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);

// y = alpha * x + beta
Tensor affine(const Tensor& x, double alpha, double beta);
inline Tensor scale(const Tensor& x, double alpha) { return affine(x, alpha, 0.0); }
inline Tensor add_scalar(const Tensor& x, double beta) { return affine(x, 1.0, beta); }
inline Tensor neg(const Tensor& x) { return affine(x, -1.0, 0.0); }

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }

// The output shape for a and b, or an error naming the op and both shapes.
Shape broadcast_shape(const Tensor& a, const Tensor& b, const char* op);

// Sums a gradient of `grad`'s shape down to `shape` (the operand's), undoing the broadcast.
Tensor reduce_to_shape(const Tensor& grad, const Shape& shape);

template <class T>
ENGINE_HD T apply_binary(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::add:
      return a + b;
    case BinaryOp::sub:
      return a - b;
    case BinaryOp::mul:
      return a * b;
    case BinaryOp::div:
      return a / b;
  }
  return a;
}

namespace cpu {
// out has the broadcast shape; a and b are contiguous and repeat with their own numel.
void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out);
void affine(const Tensor& x, double alpha, double beta, Tensor& out);
}  // namespace cpu
namespace cuda {
void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out);
void affine(const Tensor& x, double alpha, double beta, Tensor& out);
}  // namespace cuda

}  // namespace engine
