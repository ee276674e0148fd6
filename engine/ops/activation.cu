// CUDA kernels for the pointwise activations and SwiGLU. The formulas are the ENGINE_HD
// activation_forward / activation_derivative from activation.h, shared with the CPU loops;
// each kind is a template argument so a kernel holds one function and no switch.
#include <type_traits>

#include "engine/core/dispatch.h"
#include "engine/cuda/launch.cuh"
#include "engine/ops/activation.h"

namespace engine {
namespace cuda {

namespace {

template <Activation K, class T>
struct ForwardFn {
  const T* x;
  T* y;
  __device__ void operator()(int64_t i) const { y[i] = activation_forward(K, static_cast<acc_t<T>>(x[i])); }
};

// x or y may be null: the derivative reads only the one the op saved.
template <Activation K, class T>
struct BackwardFn {
  const T* x;
  const T* y;
  const T* dy;
  T* dx;
  __device__ void operator()(int64_t i) const {
    using A = acc_t<T>;  // f32 math for bf16 data
    const A xi = x ? static_cast<A>(x[i]) : A(0), yi = y ? static_cast<A>(y[i]) : A(0);
    dx[i] = static_cast<A>(dy[i]) * activation_derivative(K, xi, yi);
  }
};

template <class T>
struct SwigluForwardFn {
  const T* gate;
  const T* up;
  T* y;
  __device__ void operator()(int64_t i) const {
    using A = acc_t<T>;
    y[i] = activation_forward(Activation::silu, static_cast<A>(gate[i])) * static_cast<A>(up[i]);
  }
};

template <class T>
struct SwigluBackwardFn {
  const T* gate;
  const T* up;
  const T* dy;
  T* dgate;
  T* dup;
  __device__ void operator()(int64_t i) const {
    using A = acc_t<T>;
    const A g = gate[i], d = dy[i];
    dup[i] = d * activation_forward(Activation::silu, g);
    dgate[i] = d * static_cast<A>(up[i]) * activation_derivative(Activation::silu, g, A(0));
  }
};

template <class T>
const T* optional_data(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

}  // namespace

void activation_forward(Activation kind, const Tensor& x, Tensor& y) {
  DeviceGuard guard(x.device());
  DISPATCH_FLOAT_BF16(x.dtype(), "activation", {
    const scalar_t* px = x.data<scalar_t>();
    scalar_t* py = y.data<scalar_t>();
    with_activation_kind(kind, [&](auto k) {
      launch_elementwise(x.numel(), ForwardFn<decltype(k)::value, scalar_t>{px, py});
    });
  });
}

void activation_backward(Activation kind, const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) {
  DeviceGuard guard(dy.device());
  DISPATCH_FLOAT_BF16(dy.dtype(), "activation_backward", {
    const scalar_t* px = optional_data<scalar_t>(x);
    const scalar_t* py = optional_data<scalar_t>(y);
    const scalar_t* pdy = dy.data<scalar_t>();
    scalar_t* pdx = dx.data<scalar_t>();
    with_activation_kind(kind, [&](auto k) {
      launch_elementwise(dy.numel(), BackwardFn<decltype(k)::value, scalar_t>{px, py, pdy, pdx});
    });
  });
}

void swiglu_forward(const Tensor& gate, const Tensor& up, Tensor& y) {
  DeviceGuard guard(gate.device());
  DISPATCH_FLOAT_BF16(gate.dtype(), "swiglu", {
    launch_elementwise(y.numel(),
                       SwigluForwardFn<scalar_t>{gate.data<scalar_t>(), up.data<scalar_t>(), y.data<scalar_t>()});
  });
}

void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& dy, Tensor& dgate, Tensor& dup) {
  DeviceGuard guard(gate.device());
  DISPATCH_FLOAT_BF16(gate.dtype(), "swiglu_backward", {
    launch_elementwise(dy.numel(),
                       SwigluBackwardFn<scalar_t>{gate.data<scalar_t>(), up.data<scalar_t>(), dy.data<scalar_t>(),
                                                  dgate.data<scalar_t>(), dup.data<scalar_t>()});
  });
}

}  // namespace cuda
}  // namespace engine
