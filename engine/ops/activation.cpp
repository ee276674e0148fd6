#include "engine/ops/activation.h"

#include "engine/core/dispatch.h"
#include "engine/core/parallel.h"
#include "engine/core/tape.h"
#include "engine/ops/copy.h"

namespace engine {

namespace {
// Which saved value the derivative reads: y for sigmoid/tanh/exp, x for the rest.
bool derivative_reads_output(Activation kind) {
  return kind == Activation::sigmoid || kind == Activation::tanh || kind == Activation::exp;
}
}  // namespace

Tensor activation(Activation kind, const Tensor& x_in) {
  ENGINE_CHECK(is_floating(x_in.dtype()), "activation", "needs a floating-point tensor, got " + x_in.str());
  Tensor x = kernel_input(x_in);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  ON_DEVICE(x, activation_forward, kind, x, y);
  if (needs_grad({x_in})) {
    const bool use_y = derivative_reads_output(kind);
    Tensor saved = use_y ? y.detach() : x;
    record(y, {x_in}, [kind, use_y, saved](const Tensor& dy, GradSink& g) {
      Tensor dx = Tensor::empty(dy.shape(), dy.dtype(), dy.device());
      ON_DEVICE(dy, activation_backward, kind, use_y ? Tensor() : saved, use_y ? saved : Tensor(), dy, dx);
      g.add(0, dx);
    });
  }
  return y;
}

Tensor swiglu(const Tensor& gate_in, const Tensor& up_in) {
  ENGINE_CHECK(
      gate_in.shape() == up_in.shape() && gate_in.dtype() == up_in.dtype() && gate_in.device() == up_in.device(),
      "swiglu", "gate " + gate_in.str() + " and up " + up_in.str() + " must match");
  Tensor gate = kernel_input(gate_in), up = kernel_input(up_in);
  Tensor y = Tensor::empty(gate.shape(), gate.dtype(), gate.device());
  ON_DEVICE(y, swiglu_forward, gate, up, y);
  if (needs_grad({gate_in, up_in})) {
    record(y, {gate_in, up_in}, [gate, up](const Tensor& dy, GradSink& g) {
      Tensor dgate = Tensor::empty(dy.shape(), dy.dtype(), dy.device());
      Tensor dup = Tensor::empty(dy.shape(), dy.dtype(), dy.device());
      ON_DEVICE(dy, swiglu_backward, gate, up, dy, dgate, dup);
      g.add(0, dgate);
      g.add(1, dup);
    });
  }
  return y;
}

namespace cpu {

namespace {
template <Activation K, class T>
ENGINE_SIMD_CLONES void forward_span(const T* __restrict x, T* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = activation_forward(K, static_cast<acc_t<T>>(x[i]));
}
// The derivative reads x or y, never both (derivative_reads_output): `saved` is that one.
template <Activation K, class T>
ENGINE_SIMD_CLONES void backward_span(const T* __restrict saved, const T* __restrict dy, T* __restrict dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const acc_t<T> v = saved[i];
    dx[i] = static_cast<acc_t<T>>(dy[i]) * activation_derivative(K, v, v);
  }
}
template <Activation K, class T>
void forward_loop(const T* x, T* y, int64_t n) {
  parallel_for(n, 1 << 13, [&](int64_t b, int64_t e) { forward_span<K>(x + b, y + b, e - b); });
}
template <Activation K, class T>
void backward_loop(const T* saved, const T* dy, T* dx, int64_t n) {
  parallel_for(n, 1 << 13, [&](int64_t b, int64_t e) { backward_span<K>(saved + b, dy + b, dx + b, e - b); });
}
template <class T>
ENGINE_SIMD_CLONES void swiglu_forward_span(const T* __restrict g, const T* __restrict u, T* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    y[i] = activation_forward(Activation::silu, static_cast<acc_t<T>>(g[i])) * static_cast<acc_t<T>>(u[i]);
}
template <class T>
ENGINE_SIMD_CLONES void swiglu_backward_span(const T* __restrict g, const T* __restrict u, const T* __restrict d,
                                             T* __restrict dg, T* __restrict du, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    using A = acc_t<T>;
    const A gi = g[i], di = d[i];
    du[i] = di * activation_forward(Activation::silu, gi);
    dg[i] = di * static_cast<A>(u[i]) * activation_derivative(Activation::silu, gi, A(0));
  }
}

}  // namespace

void activation_forward(Activation kind, const Tensor& x, Tensor& y) {
  DISPATCH_FLOAT_BF16(x.dtype(), "activation", {
    const scalar_t* px = x.data<scalar_t>();
    scalar_t* py = y.data<scalar_t>();
    with_activation_kind(kind, [&](auto k) { forward_loop<decltype(k)::value>(px, py, x.numel()); });
  });
}

void activation_backward(Activation kind, const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) {
  DISPATCH_FLOAT_BF16(dy.dtype(), "activation_backward", {
    const scalar_t* saved = derivative_reads_output(kind) ? y.data<scalar_t>() : x.data<scalar_t>();
    const scalar_t* pdy = dy.data<scalar_t>();
    scalar_t* pdx = dx.data<scalar_t>();
    with_activation_kind(kind, [&](auto k) { backward_loop<decltype(k)::value>(saved, pdy, pdx, dy.numel()); });
  });
}

void swiglu_forward(const Tensor& gate, const Tensor& up, Tensor& y) {
  DISPATCH_FLOAT_BF16(gate.dtype(), "swiglu", {
    const scalar_t* g = gate.data<scalar_t>();
    const scalar_t* u = up.data<scalar_t>();
    scalar_t* py = y.data<scalar_t>();
    parallel_for(y.numel(), 1 << 13, [&](int64_t b, int64_t e) { swiglu_forward_span(g + b, u + b, py + b, e - b); });
  });
}

void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& dy, Tensor& dgate, Tensor& dup) {
  DISPATCH_FLOAT_BF16(gate.dtype(), "swiglu_backward", {
    const scalar_t* g = gate.data<scalar_t>();
    const scalar_t* u = up.data<scalar_t>();
    const scalar_t* d = dy.data<scalar_t>();
    scalar_t* dg = dgate.data<scalar_t>();
    scalar_t* du = dup.data<scalar_t>();
    parallel_for(dy.numel(), 1 << 13,
                 [&](int64_t b, int64_t e) { swiglu_backward_span(g + b, u + b, d + b, dg + b, du + b, e - b); });
  });
}

}  // namespace cpu
}  // namespace engine
