// CUDA cross-entropy from logits: a row kernel writes each row's logsumexp and loss, one
// block then sums the losses in a fixed order (deterministic, no atomics) and finds the first
// bad target; the two sums and the bad row come back to the host in one small copy.
#include <stdexcept>

#include "engine/core/dispatch.h"
#include "engine/cuda/reduce.cuh"
#include "engine/ops/cross_entropy.h"

namespace engine {
namespace cuda {

namespace {

// X: the logits' storage type; T = acc_t<X>: the math's and lse's (f32 for bf16 logits).
template <class X, class T = acc_t<X>>
__global__ void ce_rows_kernel(const X* logits, const int32_t* targets, int64_t rows, int64_t vocab,
                               int32_t ignore_index, T* lse, double* row_loss) {
  CUDA_ROW_LOOP(r, rows) {
    const X* xr = logits + r * vocab;
    T m = -static_cast<T>(INFINITY);
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
      const T v = static_cast<T>(xr[j]);
      m = v > m ? v : m;
    }
    m = block_max(m);
    double total = 0.0;
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x)
      total += static_cast<double>(exp(static_cast<T>(xr[j]) - m));
    total = block_sum(total);
    if (threadIdx.x == 0) {
      const T l = m + static_cast<T>(log(total));
      lse[r] = l;
      const int32_t t = targets[r];
      // Ignored and out-of-range targets add nothing; the host throws for the latter.
      const bool counted = t != ignore_index && t >= 0 && t < vocab;
      row_loss[r] = counted ? static_cast<double>(l) - static_cast<double>(static_cast<T>(xr[t])) : 0.0;
    }
  }
}

// result[0] = sum of row losses, result[1] = counted rows, result[2] = first bad row or -1.
// One block, so the summation order is fixed.
__global__ void ce_total_kernel(const double* row_loss, const int32_t* targets, int64_t rows, int64_t vocab,
                                int32_t ignore_index, double* result) {
  double loss = 0.0, count = 0.0, first_bad = static_cast<double>(rows);
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
    const int32_t t = targets[r];
    if (t == ignore_index) continue;
    loss += row_loss[r];
    count += 1.0;  // exact in double up to 2^53 rows
    if ((t < 0 || t >= vocab) && static_cast<double>(r) < first_bad) first_bad = static_cast<double>(r);
  }
  loss = block_sum(loss);
  count = block_sum(count);
  first_bad = block_reduce(first_bad, MinOp{}, static_cast<double>(rows));
  if (threadIdx.x == 0) {
    result[0] = loss;
    result[1] = count;
    result[2] = first_bad < static_cast<double>(rows) ? first_bad : -1.0;
  }
}

template <class X, class T = acc_t<X>>
struct CeBackwardFn {
  const X* logits;
  const int32_t* targets;
  const T* lse;
  X* dlogits;
  int64_t vocab;
  int32_t ignore_index;
  T scale;
  __device__ void operator()(int64_t i) const {
    const int64_t r = i / vocab, j = i % vocab;
    const int32_t t = targets[r];
    if (t == ignore_index) {
      dlogits[i] = T(0);
      return;
    }
    const T p = scale * exp(static_cast<T>(logits[i]) - lse[r]);
    dlogits[i] = j == t ? p - scale : p;
  }
};

}  // namespace

void cross_entropy_forward(const Tensor& logits, const Tensor& targets, int32_t ignore_index, Tensor& lse,
                           double* loss_sum, int64_t* count) {
  const int64_t rows = targets.numel(), vocab = logits.size(-1);
  *loss_sum = 0.0;
  *count = 0;
  if (rows == 0) return;
  DeviceGuard guard(logits.device());
  const int32_t* pt = targets.data<int32_t>();
  Tensor row_loss = Tensor::empty({rows}, DType::f64, logits.device());
  Tensor result = Tensor::empty({3}, DType::f64, logits.device());
  DISPATCH_FLOAT_BF16(logits.dtype(), "cross_entropy", {
    ce_rows_kernel<<<row_blocks(rows), row_threads(vocab), 0, stream()>>>(
        logits.data<scalar_t>(), pt, rows, vocab, ignore_index, lse.data<acc_t<scalar_t>>(), row_loss.data<double>());
    CUDA_CHECK_LAUNCH();
  });
  ce_total_kernel<<<1, 1024, 0, stream()>>>(row_loss.data<double>(), pt, rows, vocab, ignore_index,
                                            result.data<double>());
  CUDA_CHECK_LAUNCH();
  double host[3];
  count_host_device_sync();  // the loss and the target check are read back here
  CUDA_CHECK_SYNC(cudaMemcpy(host, result.data<double>(), sizeof(host), cudaMemcpyDeviceToHost));
  if (host[2] >= 0) {
    const int64_t bad_row = static_cast<int64_t>(host[2]);
    int32_t bad_target = 0;
    CUDA_CHECK(cudaMemcpy(&bad_target, pt + bad_row, sizeof(bad_target), cudaMemcpyDeviceToHost));
    throw std::invalid_argument("cross_entropy: target " + std::to_string(bad_target) + " at row " +
                                std::to_string(bad_row) + " is outside [0, " + std::to_string(vocab) +
                                ") and is not ignore_index (" + std::to_string(ignore_index) + ")");
  }
  *loss_sum = host[0];
  *count = static_cast<int64_t>(host[1]);
}

void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse, int32_t ignore_index,
                            double grad_scale, Tensor& dlogits) {
  const int64_t vocab = logits.size(-1);
  DeviceGuard guard(logits.device());
  DISPATCH_FLOAT_BF16(logits.dtype(), "cross_entropy_backward", {
    using acc = acc_t<scalar_t>;
    launch_elementwise(dlogits.numel(), CeBackwardFn<scalar_t>{logits.data<scalar_t>(), targets.data<int32_t>(),
                                                               lse.data<acc>(), dlogits.data<scalar_t>(), vocab,
                                                               ignore_index, static_cast<acc>(grad_scale)});
  });
}

}  // namespace cuda
}  // namespace engine
