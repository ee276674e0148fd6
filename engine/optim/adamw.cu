// CUDA kernel for the fused AdamW update: one grid-stride pass per parameter, running
// adamw_element from adamw.h, the expression the CPU loop runs.
#include "engine/core/dispatch.h"
#include "engine/cuda/launch.cuh"
#include "engine/optim/adamw.h"

namespace engine {
namespace cuda {

namespace {

template <class T>
struct AdamWFn {
  T* p;
  const T* g;
  T* m;
  T* v;
  T lr, beta1, beta2, eps, decay_factor, inv_c1, inv_c2;
  __device__ void operator()(int64_t i) const {
    adamw_element(p[i], m[i], v[i], g[i], lr, beta1, beta2, eps, decay_factor, inv_c1, inv_c2);
  }
};

}  // namespace

void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWStepArgs& a) {
  DeviceGuard guard(param.device());
  DISPATCH_FLOAT(param.dtype(), "adamw_update", {
    using T = scalar_t;
    launch_elementwise(param.numel(), AdamWFn<T>{param.data<T>(), grad.data<T>(), m.data<T>(), v.data<T>(),
                                                 static_cast<T>(a.lr), static_cast<T>(a.beta1), static_cast<T>(a.beta2),
                                                 static_cast<T>(a.eps), static_cast<T>(a.decay_factor),
                                                 static_cast<T>(a.inv_correction1), static_cast<T>(a.inv_correction2)});
  });
}

}  // namespace cuda
}  // namespace engine
