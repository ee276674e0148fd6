// CUDA kernels for add/sub/mul/div with the engine's broadcast rule (the smaller operand
// repeats with period numel over the flat output) and for affine maps y = alpha*x + beta.
// The arithmetic is apply_binary from binary.h, the same expression the CPU loop runs.
#include "engine/core/dispatch.h"
#include "engine/cuda/launch.cuh"
#include "engine/ops/binary.h"

namespace engine {
namespace cuda {

namespace {

// Index of the operand element for output i: the element itself, the single element, or
// i modulo the operand's period (64-bit modulo only on the broadcast path).
struct Repeat {
  int64_t numel, total;
  __device__ int64_t operator()(int64_t i) const { return numel == total ? i : (numel == 1 ? 0 : i % numel); }
};

template <BinaryOp OP, class T>
struct BinaryFn {
  const T* a;
  const T* b;
  T* out;
  Repeat ra, rb;
  __device__ void operator()(int64_t i) const { out[i] = apply_binary(OP, a[ra(i)], b[rb(i)]); }
};

template <class T>
struct AffineFn {
  const T* x;
  T* out;
  acc_t<T> alpha, beta;  // f32 for bf16 data
  // nvcc contracts this into one FMA; the CPU rounds twice. The difference is one ulp.
  __device__ void operator()(int64_t i) const { out[i] = alpha * static_cast<acc_t<T>>(x[i]) + beta; }
};

template <BinaryOp OP, class T>
void launch_binary(const Tensor& a, const Tensor& b, Tensor& out) {
  const int64_t n = out.numel();
  launch_elementwise(
      n, BinaryFn<OP, T>{a.data<T>(), b.data<T>(), out.data<T>(), Repeat{a.numel(), n}, Repeat{b.numel(), n}});
}

}  // namespace

void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  DeviceGuard guard(out.device());
  DISPATCH_FLOAT_BF16(out.dtype(), "binary", {
    switch (op) {
      case BinaryOp::add:
        launch_binary<BinaryOp::add, scalar_t>(a, b, out);
        break;
      case BinaryOp::sub:
        launch_binary<BinaryOp::sub, scalar_t>(a, b, out);
        break;
      case BinaryOp::mul:
        launch_binary<BinaryOp::mul, scalar_t>(a, b, out);
        break;
      case BinaryOp::div:
        launch_binary<BinaryOp::div, scalar_t>(a, b, out);
        break;
    }
  });
}

void affine(const Tensor& x, double alpha, double beta, Tensor& out) {
  DeviceGuard guard(out.device());
  DISPATCH_FLOAT_BF16(out.dtype(), "affine", {
    using acc = acc_t<scalar_t>;
    launch_elementwise(out.numel(), AffineFn<scalar_t>{x.data<scalar_t>(), out.data<scalar_t>(),
                                                       static_cast<acc>(alpha), static_cast<acc>(beta)});
  });
}

}  // namespace cuda
}  // namespace engine
