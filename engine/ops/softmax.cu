// CUDA softmax / log_softmax through cuDNN (the legacy softmax API, still in cuDNN 9's ops
// library), and logsumexp forward/backward with the engine's own row kernels.
#include <climits>

#include "engine/core/dispatch.h"
#include "engine/cuda/reduce.cuh"
#include "engine/ops/softmax.h"

namespace engine {
namespace cuda {

namespace {

// Each row of the [rows, n] view is one cuDNN image: N = rows, C = n, H = W = 1, softmax over
// C*H*W (MODE_INSTANCE). ACCURATE and LOG subtract the row max first, so large logits do not
// overflow; a row of all -inf gives NaN (-inf - -inf), as on the CPU.
class TensorDesc {
 public:
  TensorDesc(cudnnDataType_t type, int rows, int n) {
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&desc_));
    const cudnnStatus_t st = cudnnSetTensor4dDescriptor(desc_, CUDNN_TENSOR_NCHW, type, rows, n, 1, 1);
    if (st != CUDNN_STATUS_SUCCESS) {
      cudnnDestroyTensorDescriptor(desc_);
      CUDNN_CHECK(st);
    }
  }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(desc_); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
  operator cudnnTensorDescriptor_t() const { return desc_; }

 private:
  cudnnTensorDescriptor_t desc_ = nullptr;
};

template <class T>
cudnnDataType_t cudnn_type();
template <>
cudnnDataType_t cudnn_type<float>() {
  return CUDNN_DATA_FLOAT;
}
template <>
cudnnDataType_t cudnn_type<double>() {
  return CUDNN_DATA_DOUBLE;
}

// cuDNN takes int dimensions and (to be safe) fewer than 2^31 elements per call: long inputs
// are processed in chunks of whole rows.
struct RowChunks {
  int64_t rows, n, per_chunk;
  RowChunks(int64_t rows_, int64_t n_) : rows(rows_), n(n_) {
    ENGINE_CHECK(n <= INT_MAX, "softmax", "rows of " + std::to_string(n) + " elements exceed cuDNN's limit");
    per_chunk = std::max<int64_t>(1, std::min<int64_t>(rows, INT_MAX / std::max<int64_t>(n, 1)));
  }
};

// Rows whose max is -inf (all -inf, or empty): exp(x - max) would be NaN, but the sum of
// nothing is 0, so logsumexp is -inf, as on the CPU. A +inf element still gives NaN there.
template <class T>
__global__ void logsumexp_kernel(const T* x, int64_t rows, int64_t n, T* out) {
  CUDA_ROW_LOOP(r, rows) {
    const T* row = x + r * n;
    T m = -static_cast<T>(INFINITY);
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) m = row[j] > m ? row[j] : m;
    m = block_max(m);
    if (isinf(m) && m < 0) {
      if (threadIdx.x == 0) out[r] = m;
      continue;  // uniform across the block: m is the block-wide result
    }
    T total = 0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) total += exp(row[j] - m);
    total = block_sum(total);
    if (threadIdx.x == 0) out[r] = m + log(total);
  }
}

template <class T>
struct LogsumexpBackwardFn {
  const T* x;
  const T* lse;
  const T* dy;
  T* dx;
  int64_t n;
  __device__ void operator()(int64_t i) const {
    const int64_t r = i / n;
    dx[i] = dy[r] * exp(x[i] - lse[r]);
  }
};

}  // namespace

void softmax_forward(const Tensor& x, bool log, Tensor& y) {
  const int64_t n = x.size(-1), rows = n ? x.numel() / n : 0;
  if (rows == 0 || n == 0) return;
  DeviceGuard guard(x.device());
  const RowChunks chunks(rows, n);
  DISPATCH_FLOAT(x.dtype(), "softmax", {
    const scalar_t one = 1, zero = 0;
    const scalar_t* px = x.data<scalar_t>();
    scalar_t* py = y.data<scalar_t>();
    for (int64_t r0 = 0; r0 < rows; r0 += chunks.per_chunk) {
      const int count = static_cast<int>(std::min(chunks.per_chunk, rows - r0));
      TensorDesc desc(cudnn_type<scalar_t>(), count, static_cast<int>(n));
      CUDNN_CHECK(cudnnSoftmaxForward(cudnn_handle(), log ? CUDNN_SOFTMAX_LOG : CUDNN_SOFTMAX_ACCURATE,
                                      CUDNN_SOFTMAX_MODE_INSTANCE, &one, desc, px + r0 * n, &zero, desc, py + r0 * n));
    }
  });
}

void softmax_backward(const Tensor& y, const Tensor& dy, bool log, Tensor& dx) {
  const int64_t n = y.size(-1), rows = n ? y.numel() / n : 0;
  if (rows == 0 || n == 0) return;
  DeviceGuard guard(y.device());
  const RowChunks chunks(rows, n);
  DISPATCH_FLOAT(y.dtype(), "softmax_backward", {
    const scalar_t one = 1, zero = 0;
    const scalar_t* py = y.data<scalar_t>();
    const scalar_t* pd = dy.data<scalar_t>();
    scalar_t* px = dx.data<scalar_t>();
    for (int64_t r0 = 0; r0 < rows; r0 += chunks.per_chunk) {
      const int count = static_cast<int>(std::min(chunks.per_chunk, rows - r0));
      TensorDesc desc(cudnn_type<scalar_t>(), count, static_cast<int>(n));
      // LOG: dx = dy - exp(y) * sum(dy); ACCURATE: dx = y * (dy - sum(dy * y)), as on the CPU.
      CUDNN_CHECK(cudnnSoftmaxBackward(cudnn_handle(), log ? CUDNN_SOFTMAX_LOG : CUDNN_SOFTMAX_ACCURATE,
                                       CUDNN_SOFTMAX_MODE_INSTANCE, &one, desc, py + r0 * n, desc, pd + r0 * n, &zero,
                                       desc, px + r0 * n));
    }
  });
}

void logsumexp_forward(const Tensor& x, Tensor& out) {
  const int64_t n = x.size(-1), rows = out.numel();
  if (rows == 0) return;
  DeviceGuard guard(x.device());
  DISPATCH_FLOAT(x.dtype(), "logsumexp", {
    logsumexp_kernel<<<row_blocks(rows), row_threads(n), 0, stream()>>>(x.data<scalar_t>(), rows, n,
                                                                        out.data<scalar_t>());
    CUDA_CHECK_LAUNCH();
  });
}

void logsumexp_backward(const Tensor& x, const Tensor& lse, const Tensor& dy, Tensor& dx) {
  const int64_t n = x.size(-1);
  DeviceGuard guard(x.device());
  DISPATCH_FLOAT(x.dtype(), "logsumexp_backward", {
    launch_elementwise(x.numel(), LogsumexpBackwardFn<scalar_t>{x.data<scalar_t>(), lse.data<scalar_t>(),
                                                                dy.data<scalar_t>(), dx.data<scalar_t>(), n});
  });
}

}  // namespace cuda
}  // namespace engine
