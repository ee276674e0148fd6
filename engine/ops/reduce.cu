// CUDA kernels for sum/mean over one axis of [outer, n, inner] and their backward
// (expand_middle). Deterministic: every output element is summed by a fixed tree in double,
// without atomics, so results do not change run to run.
#include "engine/core/dispatch.h"
#include "engine/cuda/reduce.cuh"
#include "engine/ops/reduce.h"

namespace engine {
namespace cuda {

namespace {

// inner == 1: each row of n elements is contiguous; one block per row.
// The sum of bf16 data is written in f32 (acc_t): see reduce.cpp.
template <class T>
__global__ void row_sum_kernel(const T* x, int64_t rows, int64_t n, double scale, acc_t<T>* out) {
  CUDA_ROW_LOOP(r, rows) {
    const T* row = x + r * n;
    double acc = 0.0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) acc += static_cast<double>(static_cast<acc_t<T>>(row[j]));
    acc = block_sum(acc);
    if (threadIdx.x == 0) out[r] = static_cast<acc_t<T>>(acc * scale);
  }
}

// Few long rows (a whole-tensor sum is one row): row_sum_kernel would run one block per row.
// Instead block b sums chunk b % chunks of row b / chunks into partial[b] in double, and a second
// kernel adds each row's chunks in order. Fixed trees both, as in row_sum_kernel.
template <class T>
__global__ void row_chunk_sum_kernel(const T* x, int64_t rows, int64_t n, int64_t chunks, int64_t chunk_len,
                                     double* partial) {
  CUDA_ROW_LOOP(b, rows * chunks) {
    const int64_t r = b / chunks, begin = (b % chunks) * chunk_len;
    const int64_t end = begin + chunk_len < n ? begin + chunk_len : n;
    const T* row = x + r * n;
    double acc = 0.0;
    for (int64_t j = begin + threadIdx.x; j < end; j += blockDim.x)
      acc += static_cast<double>(static_cast<acc_t<T>>(row[j]));
    acc = block_sum(acc);
    if (threadIdx.x == 0) partial[b] = acc;
  }
}

template <class T>
__global__ void chunk_total_kernel(const double* partial, int64_t rows, int64_t chunks, double scale, T* out) {
  CUDA_ROW_LOOP(r, rows) {
    double acc = 0.0;
    for (int64_t q = threadIdx.x; q < chunks; q += blockDim.x) acc += partial[r * chunks + q];
    acc = block_sum(acc);
    if (threadIdx.x == 0) out[r] = static_cast<T>(acc * scale);
  }
}

// Rows of n contiguous elements summed into out (f32 for bf16 rows), launched from the device's size.
template <class T>
void launch_row_sum(const T* x, int64_t rows, int64_t n, double scale, acc_t<T>* out, Device device) {
  const int64_t wanted = int64_t{4} * sm_count();  // blocks to keep every SM busy
  constexpr int64_t kMinChunk = 4096;              // elements per chunk
  if (rows >= wanted || n < 2 * kMinChunk) {
    row_sum_kernel<<<row_blocks(rows), row_threads(n), 0, stream()>>>(x, rows, n, scale, out);
    CUDA_CHECK_LAUNCH();
    return;
  }
  int64_t chunks = (wanted + rows - 1) / rows;
  if (chunks > n / kMinChunk) chunks = n / kMinChunk;
  const int64_t chunk_len = (n + chunks - 1) / chunks;
  chunks = (n + chunk_len - 1) / chunk_len;
  // Freed on return while the kernels are queued: safe on the one stream (runtime.h).
  Tensor partial = Tensor::empty({rows * chunks}, DType::f64, device);
  row_chunk_sum_kernel<<<row_blocks(rows * chunks), 256, 0, stream()>>>(x, rows, n, chunks, chunk_len,
                                                                        partial.data<double>());
  CUDA_CHECK_LAUNCH();
  chunk_total_kernel<<<row_blocks(rows), row_threads(chunks), 0, stream()>>>(partial.data<double>(), rows, chunks,
                                                                             scale, out);
  CUDA_CHECK_LAUNCH();
}

template <class T>
struct MiddleLoad {
  const T* x;
  int64_t n, inner;
  __device__ acc_t<T> operator()(int64_t o, int64_t j, int64_t c) const { return x[(o * n + j) * inner + c]; }
};

template <class T>
struct ScaledStore {
  T* out;
  int64_t inner;
  double scale;
  __device__ void operator()(int64_t o, int64_t c, double total) const {
    out[o * inner + c] = static_cast<T>(total * scale);
  }
};

template <class T>
struct ExpandFn {
  const T* dy;
  T* dx;
  int64_t n, inner;
  acc_t<T> scale;
  __device__ void operator()(int64_t i) const {
    const int64_t c = i % inner, o = i / (n * inner);
    dx[i] = scale * static_cast<acc_t<T>>(dy[o * inner + c]);
  }
};

// Sum of squares in two fixed passes: block b sums chunk b (kSquaresChunk elements) into
// partial[b]; then one block sums the partials. No atomics: the same tree on every run.
constexpr int64_t kSquaresChunk = int64_t{1} << 15;
constexpr int kSquaresThreads = 256;

template <class T>
__global__ void chunk_squares_kernel(const T* x, int64_t n, int64_t chunks, double* partial) {
  CUDA_ROW_LOOP(c, chunks) {
    const int64_t begin = c * kSquaresChunk, end = begin + kSquaresChunk < n ? begin + kSquaresChunk : n;
    double acc = 0.0;
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
      const double v = static_cast<double>(static_cast<acc_t<T>>(x[i]));
      acc += v * v;
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) partial[c] = acc;
  }
}

__global__ void sum_partials_kernel(const double* partial, int64_t count, double* out) {
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
  acc = block_sum(acc);
  if (threadIdx.x == 0) out[0] = acc;
}

}  // namespace

void sum_squares(const Tensor& x, Tensor& out) {
  DeviceGuard guard(x.device());
  const int64_t n = x.numel(), chunks = (n + kSquaresChunk - 1) / kSquaresChunk;
  Tensor partial = Tensor::empty({chunks > 0 ? chunks : 1}, DType::f64, x.device());
  DISPATCH_FLOAT_BF16(x.dtype(), "sum_squares", {
    if (chunks > 0) {
      chunk_squares_kernel<<<row_blocks(chunks), kSquaresThreads, 0, stream()>>>(x.data<scalar_t>(), n, chunks,
                                                                                 partial.data<double>());
      CUDA_CHECK_LAUNCH();
    }
  });
  sum_partials_kernel<<<1, kSquaresThreads, 0, stream()>>>(partial.data<double>(), chunks, out.data<double>());
  CUDA_CHECK_LAUNCH();
}

void reduce_sum(const Tensor& x, int64_t outer, int64_t n, int64_t inner, double scale, Tensor& out) {
  DeviceGuard guard(x.device());
  DISPATCH_FLOAT_BF16(x.dtype(), "sum", {
    using out_t = acc_t<scalar_t>;
    const scalar_t* px = x.data<scalar_t>();
    out_t* po = out.data<out_t>();
    if (outer * inner == 0) return;
    if (inner == 1) {
      launch_row_sum(px, outer, n, scale, po, x.device());
    } else {
      launch_column_sum(outer, n, inner, MiddleLoad<scalar_t>{px, n, inner}, ScaledStore<out_t>{po, inner, scale});
    }
  });
}

void expand_middle(const Tensor& dy, int64_t outer, int64_t n, int64_t inner, double scale, Tensor& dx) {
  DeviceGuard guard(dy.device());
  DISPATCH_FLOAT_BF16(dy.dtype(), "sum_backward", {
    launch_elementwise(outer * n * inner, ExpandFn<scalar_t>{dy.data<scalar_t>(), dx.data<scalar_t>(), n, inner,
                                                             static_cast<acc_t<scalar_t>>(scale)});
  });
}

}  // namespace cuda
}  // namespace engine
