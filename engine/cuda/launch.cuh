// Launch helpers for the CUDA kernels: grid sizing for n elements at 256 threads, the
// grid-stride loop, and a generic elementwise kernel driven by a functor (device lambdas
// would need --extended-lambda, which the build does not pass).
#pragma once
#include <algorithm>
#include <cstdint>

#include "engine/cuda/runtime.h"

namespace engine {
namespace cuda {

constexpr int kThreads = 256;

// Enough blocks to cover n at one element per thread, capped at 16 per SM of the current device
// (enough to fill it): grid-stride loops cover the rest, and the cap keeps launches cheap for
// huge tensors. Results never depend on the grid size, only on the loop.
inline unsigned grid_for(int64_t n, int threads = kThreads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(blocks, int64_t{16} * sm_count())));
}

// for (i = this thread's first element; i < n; i += all threads of the grid)
#define CUDA_GRID_LOOP(i, n)                                                             \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

template <class F>
__global__ void elementwise_kernel(int64_t n, F f) {
  CUDA_GRID_LOOP(i, n) f(i);
}

// Calls f(i) for every i in [0, n) on the device. F is a struct with a __device__ operator().
template <class F>
void launch_elementwise(int64_t n, const F& f) {
  if (n <= 0) return;
  elementwise_kernel<<<grid_for(n), kThreads, 0, stream()>>>(n, f);
  CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace engine
