// CUDA dropout: element i is kept when uniform_at(seed, offset, i) > p, exactly the CPU test
// (the same Philox bits and the same float comparison), so both devices drop the same
// elements and backward regenerates the mask instead of storing it.
#include "engine/core/dispatch.h"
#include "engine/core/random.h"
#include "engine/cuda/launch.cuh"
#include "engine/ops/dropout.h"

namespace engine {
namespace cuda {

namespace {

template <class T>
struct DropoutFn {
  const T* x;
  T* y;
  uint64_t seed, offset;
  float threshold;
  acc_t<T> keep_scale;  // f32 for bf16 data
  __device__ void operator()(int64_t i) const {
    using A = acc_t<T>;
    y[i] = uniform_at(seed, offset, static_cast<uint64_t>(i)) > threshold ? static_cast<A>(x[i]) * keep_scale : A(0);
  }
};

}  // namespace

void dropout_apply(const Tensor& x, double p, uint64_t seed, uint64_t offset, Tensor& y) {
  DeviceGuard guard(x.device());
  DISPATCH_FLOAT_BF16(x.dtype(), "dropout", {
    launch_elementwise(x.numel(), DropoutFn<scalar_t>{x.data<scalar_t>(), y.data<scalar_t>(), seed, offset,
                                                      static_cast<float>(p), static_cast<acc_t<scalar_t>>(1.0 / (1.0 - p))});
  });
}

}  // namespace cuda
}  // namespace engine
