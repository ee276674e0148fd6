// CUDA normal and uniform fills from the counter-based Philox generator in random.h: element
// i is a pure function of (seed, offset + i), the same function the CPU evaluates.
#include "engine/core/dispatch.h"
#include "engine/core/random.h"
#include "engine/cuda/launch.cuh"
#include "engine/ops/random_fill.h"

namespace engine {
namespace cuda {

namespace {

// Pitfall: normal_at's double log/cos/sqrt may differ from glibc's in the last ulp, and nvcc
// fuses mean + std * z into an FMA, so f64 draws match the CPU to ~1e-15, not bit for bit;
// after rounding to f32 they almost always match exactly.
template <class T>
struct NormalFn {
  T* out;
  uint64_t seed, offset;
  double mean, std;
  __device__ void operator()(int64_t i) const {
    out[i] = static_cast<T>(mean + std * normal_at(seed, offset, static_cast<uint64_t>(i)));
  }
};

template <class T>
struct UniformFn {
  T* out;
  uint64_t seed, offset;
  double low, high;
  __device__ void operator()(int64_t i) const {
    out[i] =
        static_cast<T>(low + (high - low) * static_cast<double>(uniform_at(seed, offset, static_cast<uint64_t>(i))));
  }
};

}  // namespace

void normal_fill(Tensor& out, uint64_t seed, uint64_t offset, double mean, double std) {
  DeviceGuard guard(out.device());
  DISPATCH_FLOAT(out.dtype(), "randn", {
    launch_elementwise(out.numel(), NormalFn<scalar_t>{out.data<scalar_t>(), seed, offset, mean, std});
  });
}

void uniform_fill(Tensor& out, uint64_t seed, uint64_t offset, double low, double high) {
  DeviceGuard guard(out.device());
  DISPATCH_FLOAT(out.dtype(), "rand_uniform", {
    launch_elementwise(out.numel(), UniformFn<scalar_t>{out.data<scalar_t>(), seed, offset, low, high});
  });
}

}  // namespace cuda
}  // namespace engine
