// Deterministic reductions shared by the CUDA kernels: block-wide sum/max (a fixed shuffle
// tree, no atomics, so a result never depends on scheduling), the launch shape for
// "one block per row" kernels, and a column-sum kernel for [outer, n, inner] layouts.
#pragma once
#include <cmath>
#include <cstdint>

#include "engine/core/tensor.h"
#include "engine/cuda/launch.cuh"

namespace engine {
namespace cuda {

struct SumOp {
  template <class T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};
struct MaxOp {
  template <class T>
  __device__ T operator()(T a, T b) const {
    return a > b ? a : b;
  }
};
struct MinOp {
  template <class T>
  __device__ T operator()(T a, T b) const {
    return a < b ? a : b;
  }
};

// Reduces one value per thread over the whole block; every thread gets the result.
// blockDim.x must be a multiple of 32 (and blockDim.y == 1); every thread must call it.
// Threads without data pass `identity`. T is float or double.
template <class T, class Op>
__device__ T block_reduce(T v, Op op, T identity) {
  __shared__ double scratch[32];  // one slot per warp; double fits float too
  T* slots = reinterpret_cast<T*>(scratch);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, off));
  if (lane == 0) slots[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < warps ? slots[lane] : identity;
    for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, off));
    if (lane == 0) slots[0] = v;
  }
  __syncthreads();
  const T result = slots[0];
  __syncthreads();  // the next call may overwrite the slots
  return result;
}

template <class T>
__device__ T block_sum(T v) {
  return block_reduce(v, SumOp{}, T(0));
}

template <class T>
__device__ T block_max(T v) {
  return block_reduce(v, MaxOp{}, -static_cast<T>(INFINITY));
}

// Dot product of two rows of n elements by the whole block, accumulated in double.
template <class T>
__device__ double block_dot(const T* a, const T* b, int64_t n) {
  double acc = 0.0;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) acc += static_cast<double>(a[j]) * static_cast<double>(b[j]);
  return block_sum(acc);
}

// Row kernels: one block per row (rows looped over with stride gridDim.x); the block's threads
// stride over the row. The block size depends on n only, so the summation tree, and with it
// the rounding, is the same on every run.
inline int row_threads(int64_t n) {
  int t = 32;
  while (t < 256 && t < n) t *= 2;
  return t;
}
inline unsigned row_blocks(int64_t rows) {
  const int64_t cap = int64_t{64} * sm_count();  // 64 row blocks per SM of the current device
  return static_cast<unsigned>(rows < 1 ? 1 : (rows < cap ? rows : cap));
}
#define CUDA_ROW_LOOP(row, rows) for (int64_t row = blockIdx.x; row < (rows); row += gridDim.x)

// Column sums over the middle axis of [outer, n, inner]: store(o, c, sum_j load(o, j, c)), the
// sum accumulated in double. A block covers 32 columns; its 16 thread rows each sum every 16th
// j in order, then one thread adds the 16 partial sums in order: a fixed tree.
constexpr int kColumnWidth = 32, kColumnSplit = 16;

template <class Load, class Store>
__global__ void column_sum_kernel(int64_t outer, int64_t n, int64_t inner, Load load, Store store) {
  __shared__ double partial[kColumnSplit][kColumnWidth + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  for (int64_t o = blockIdx.y; o < outer; o += gridDim.y) {
    for (int64_t c0 = static_cast<int64_t>(blockIdx.x) * kColumnWidth; c0 < inner;
         c0 += static_cast<int64_t>(gridDim.x) * kColumnWidth) {
      const int64_t c = c0 + tx;
      double acc = 0.0;
      if (c < inner)
        for (int64_t j = ty; j < n; j += kColumnSplit) acc += static_cast<double>(load(o, j, c));
      partial[ty][tx] = acc;
      __syncthreads();
      if (ty == 0 && c < inner) {
        double total = 0.0;
        for (int r = 0; r < kColumnSplit; ++r) total += partial[r][tx];
        store(o, c, total);
      }
      __syncthreads();
    }
  }
}

template <class Load, class Store>
void launch_column_sum_pass(int64_t outer, int64_t n, int64_t inner, const Load& load, const Store& store) {
  const int64_t col_blocks = (inner + kColumnWidth - 1) / kColumnWidth;
  const dim3 grid(static_cast<unsigned>(col_blocks < 4096 ? col_blocks : 4096),
                  static_cast<unsigned>(outer < 65535 ? outer : 65535));
  column_sum_kernel<<<grid, dim3(kColumnWidth, kColumnSplit), 0, stream()>>>(outer, n, inner, load, store);
  CUDA_CHECK_LAUNCH();
}

// The first pass of a chunked column sum: row o2 = o * chunks + q of a virtual [outer * chunks,
// chunk_len, inner] layout is chunk q of row o's middle axis (zeros past n).
template <class Load>
struct ChunkedLoad {
  Load load;
  int64_t chunks, chunk_len, n;
  __device__ double operator()(int64_t o2, int64_t j2, int64_t c) const {
    const int64_t o = o2 / chunks, j = (o2 % chunks) * chunk_len + j2;
    return j < n ? static_cast<double>(load(o, j, c)) : 0.0;
  }
};
struct PartialStore {
  double* partial;
  int64_t inner;
  __device__ void operator()(int64_t o2, int64_t c, double total) const { partial[o2 * inner + c] = total; }
};
struct PartialLoad {
  const double* partial;
  int64_t chunks, inner;
  __device__ double operator()(int64_t o, int64_t q, int64_t c) const { return partial[(o * chunks + q) * inner + c]; }
};

// Column sums, sized from the device: when 32-column blocks over outer rows would fill fewer
// than 4 blocks per SM (a bias or norm-weight gradient: outer 1, inner the width, n every
// token, once only inner/32 blocks each walking all of n), the middle axis is cut into chunks
// summed side by side into a double buffer, and a second pass adds each column's chunks in
// order. Both passes are fixed trees, so results stay run-to-run identical.
template <class Load, class Store>
void launch_column_sum(int64_t outer, int64_t n, int64_t inner, const Load& load, const Store& store) {
  if (outer <= 0 || inner <= 0) return;
  const int64_t col_blocks = (inner + kColumnWidth - 1) / kColumnWidth;
  const int64_t blocks = (col_blocks < 4096 ? col_blocks : 4096) * (outer < 65535 ? outer : 65535);
  const int64_t wanted = int64_t{4} * sm_count();
  constexpr int64_t kMinChunk = 256;  // rows per chunk: below this the second pass costs more than it saves
  if (blocks >= wanted || n < 2 * kMinChunk) {
    launch_column_sum_pass(outer, n, inner, load, store);
    return;
  }
  int64_t chunks = (wanted + blocks - 1) / blocks;
  if (chunks > n / kMinChunk) chunks = n / kMinChunk;
  const int64_t chunk_len = (n + chunks - 1) / chunks;
  chunks = (n + chunk_len - 1) / chunk_len;
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  // Freed on return while the passes are queued: safe, every later use of the block is queued
  // behind them on the same stream (runtime.h).
  Tensor partial = Tensor::empty({outer * chunks * inner}, DType::f64, Device::cuda(device));
  launch_column_sum_pass(outer * chunks, chunk_len, inner, ChunkedLoad<Load>{load, chunks, chunk_len, n},
                         PartialStore{partial.data<double>(), inner});
  launch_column_sum_pass(outer, chunks, inner, PartialLoad{partial.data<double>(), chunks, inner}, store);
}

}  // namespace cuda
}  // namespace engine
