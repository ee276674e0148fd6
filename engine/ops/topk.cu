// CUDA top-k over the last axis: one warp per row. Pick s scans the row for the best element
// ranked strictly after pick s-1 under a strict total order (larger first, NaN below every
// number, ties to the lower index), so the result is exactly the CPU's. O(k * n / 32) per row:
// meant for routing (k of 1-8 over tens of experts), not for sorting long rows.
#include "engine/core/dispatch.h"
#include "engine/cuda/launch.cuh"
#include "engine/ops/topk.h"

namespace engine {
namespace cuda {

namespace {

template <class T>
__device__ bool ranks_before(T a, int64_t a_index, T b, int64_t b_index) {
  const bool a_nan = isnan(a), b_nan = isnan(b);
  if (a_nan || b_nan) return a_nan == b_nan ? a_index < b_index : b_nan;
  return a > b || (a == b && a_index < b_index);
}

template <class T>
__global__ void topk_kernel(const T* x, int64_t rows, int64_t n, int64_t k, T* values, int32_t* indices) {
  constexpr unsigned kAll = 0xffffffffu;
  const int lane = threadIdx.x & 31;
  const int64_t first_warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int64_t warps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  for (int64_t r = first_warp; r < rows; r += warps) {  // the same r for the whole warp
    const T* row = x + r * n;
    T prev_v = T(0);
    int64_t prev_i = -1;  // -1: nothing picked yet
    for (int64_t s = 0; s < k; ++s) {
      T best_v = T(0);
      int64_t best_i = -1;
      for (int64_t j = lane; j < n; j += 32) {
        const T v = row[j];
        if (prev_i >= 0 && !ranks_before(prev_v, prev_i, v, j)) continue;  // already picked
        if (best_i < 0 || ranks_before(v, j, best_v, best_i)) {
          best_v = v;
          best_i = j;
        }
      }
      for (int off = 16; off > 0; off >>= 1) {
        const T other_v = __shfl_down_sync(kAll, best_v, off);
        const int64_t other_i = __shfl_down_sync(kAll, best_i, off);
        if (other_i >= 0 && (best_i < 0 || ranks_before(other_v, other_i, best_v, best_i))) {
          best_v = other_v;
          best_i = other_i;
        }
      }
      best_v = __shfl_sync(kAll, best_v, 0);
      best_i = __shfl_sync(kAll, best_i, 0);
      if (lane == 0) {
        values[r * k + s] = best_v;
        indices[r * k + s] = static_cast<int32_t>(best_i);
      }
      prev_v = best_v;
      prev_i = best_i;
    }
  }
}

// The k indices of a row are distinct, so these writes never collide.
template <class T>
struct TopkBackwardFn {
  const int32_t* indices;
  const T* dvalues;
  T* dx;
  int64_t k, n;
  __device__ void operator()(int64_t i) const { dx[(i / k) * n + indices[i]] = dvalues[i]; }
};

}  // namespace

void topk_forward(const Tensor& x, int64_t k, Tensor& values, Tensor& indices) {
  const int64_t n = x.size(-1);
  const int64_t rows = n ? x.numel() / n : 0;
  if (rows == 0 || k == 0) return;
  DeviceGuard guard(x.device());
  DISPATCH_FLOAT(x.dtype(), "topk", {
    // 8 warps (rows) per block.
    topk_kernel<<<grid_for(rows * 32), kThreads, 0, stream()>>>(x.data<scalar_t>(), rows, n, k, values.data<scalar_t>(),
                                                                indices.data<int32_t>());
    CUDA_CHECK_LAUNCH();
  });
}

void topk_backward(const Tensor& indices, const Tensor& dvalues, Tensor& dx) {
  const int64_t k = indices.size(-1), n = dx.size(-1);
  DeviceGuard guard(dx.device());
  DISPATCH_FLOAT(dvalues.dtype(), "topk_backward", {
    launch_elementwise(indices.numel(), TopkBackwardFn<scalar_t>{indices.data<int32_t>(), dvalues.data<scalar_t>(),
                                                                 dx.data<scalar_t>(), k, n});
  });
}

}  // namespace cuda
}  // namespace engine
