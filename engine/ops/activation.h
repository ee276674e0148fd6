// Pointwise activations: GELU (tanh form), SiLU, sigmoid, softplus, ReLU, tanh, exp, log,
// square, and SwiGLU (silu(gate) * up). Forward and derivative formulas are shared by the CPU
// loops and the CUDA kernels (ENGINE_HD below).
//
// Pitfalls: sigmoid and softplus are written to avoid exp overflow for large |x|;
// log of non-positive input gives -inf/NaN as in every library.
#pragma once
#include <cmath>
#include <type_traits>

#include "engine/core/fast_math.h"
#include "engine/core/hostdevice.h"
#include "engine/core/tensor.h"

namespace engine {

enum class Activation : uint8_t { gelu_tanh, silu, sigmoid, softplus, relu, tanh, exp, log, square, normal_cdf };

Tensor activation(Activation kind, const Tensor& x);
inline Tensor gelu(const Tensor& x) { return activation(Activation::gelu_tanh, x); }
inline Tensor silu(const Tensor& x) { return activation(Activation::silu, x); }
inline Tensor sigmoid(const Tensor& x) { return activation(Activation::sigmoid, x); }
inline Tensor softplus(const Tensor& x) { return activation(Activation::softplus, x); }
inline Tensor relu(const Tensor& x) { return activation(Activation::relu, x); }
inline Tensor tanh(const Tensor& x) { return activation(Activation::tanh, x); }
inline Tensor exp(const Tensor& x) { return activation(Activation::exp, x); }
inline Tensor log(const Tensor& x) { return activation(Activation::log, x); }
inline Tensor square(const Tensor& x) { return activation(Activation::square, x); }
// Phi(x), the standard normal CDF (Shazeer's load loss).
inline Tensor normal_cdf(const Tensor& x) { return activation(Activation::normal_cdf, x); }

// silu(gate) * up, same shapes.
Tensor swiglu(const Tensor& gate, const Tensor& up);

// One exp of -|x| (never overflows), then the branch-free form for either sign.
template <class T>
ENGINE_HD T stable_sigmoid(T x) {
  const T e = engine_exp(x >= T(0) ? -x : x);
  return (x >= T(0) ? T(1) : e) / (T(1) + e);
}

// f(x)
template <class T>
ENGINE_HD T activation_forward(Activation kind, T x) {
  switch (kind) {
    case Activation::gelu_tanh: {
      const T c = T(0.7978845608028654);  // sqrt(2/pi)
      return T(0.5) * x * (T(1) + engine_tanh(c * (x + T(0.044715) * x * x * x)));
    }
    case Activation::silu:
      return x * stable_sigmoid(x);
    case Activation::sigmoid:
      return stable_sigmoid(x);
    case Activation::softplus:
      return (x > T(0) ? x : T(0)) + std::log1p(engine_exp(-(x > T(0) ? x : -x)));
    case Activation::relu:
      return x > T(0) ? x : T(0);
    case Activation::tanh:
      return engine_tanh(x);
    case Activation::exp:
      return engine_exp(x);
    case Activation::log:
      return std::log(x);
    case Activation::square:
      return x * x;
    case Activation::normal_cdf:
      return T(0.5) * std::erfc(-x * T(0.7071067811865476));
  }
  return x;
}

// f'(x), given x and y = f(x) (whichever is cheaper to use).
template <class T>
ENGINE_HD T activation_derivative(Activation kind, T x, T y) {
  switch (kind) {
    case Activation::gelu_tanh: {
      const T c = T(0.7978845608028654);
      const T inner = c * (x + T(0.044715) * x * x * x);
      const T t = engine_tanh(inner);
      const T dinner = c * (T(1) + T(3) * T(0.044715) * x * x);
      return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * dinner;
    }
    case Activation::silu: {
      const T s = stable_sigmoid(x);
      return s * (T(1) + x * (T(1) - s));
    }
    case Activation::sigmoid:
      return y * (T(1) - y);
    case Activation::softplus:
      return stable_sigmoid(x);
    case Activation::relu:
      return x > T(0) ? T(1) : T(0);
    case Activation::tanh:
      return T(1) - y * y;
    case Activation::exp:
      return y;
    case Activation::log:
      return T(1) / x;
    case Activation::square:
      return T(2) * x;
    case Activation::normal_cdf:
      return T(0.3989422804014327) * engine_exp(T(-0.5) * x * x);  // the normal density
  }
  return T(0);
}

// Turns the runtime kind into a template argument, so each loop (CPU) or kernel (CUDA) is
// compiled for one function with no switch inside.
template <class F>
void with_activation_kind(Activation kind, F&& f) {
  using A = Activation;
  switch (kind) {
    case A::gelu_tanh:
      return f(std::integral_constant<A, A::gelu_tanh>{});
    case A::silu:
      return f(std::integral_constant<A, A::silu>{});
    case A::sigmoid:
      return f(std::integral_constant<A, A::sigmoid>{});
    case A::softplus:
      return f(std::integral_constant<A, A::softplus>{});
    case A::relu:
      return f(std::integral_constant<A, A::relu>{});
    case A::tanh:
      return f(std::integral_constant<A, A::tanh>{});
    case A::exp:
      return f(std::integral_constant<A, A::exp>{});
    case A::log:
      return f(std::integral_constant<A, A::log>{});
    case A::square:
      return f(std::integral_constant<A, A::square>{});
    case A::normal_cdf:
      return f(std::integral_constant<A, A::normal_cdf>{});
  }
}

namespace cpu {
void activation_forward(Activation kind, const Tensor& x, Tensor& y);
void activation_backward(Activation kind, const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx);
void swiglu_forward(const Tensor& gate, const Tensor& up, Tensor& y);
void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& dy, Tensor& dgate, Tensor& dup);
}  // namespace cpu
namespace cuda {
void activation_forward(Activation kind, const Tensor& x, Tensor& y);
void activation_backward(Activation kind, const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx);
void swiglu_forward(const Tensor& gate, const Tensor& up, Tensor& y);
void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& dy, Tensor& dgate, Tensor& dup);
}  // namespace cuda

}  // namespace engine
