// CUDA row gather, scatter-add (atomicAdd: rows may repeat) and the per-row dot product used
// for the combine weights' gradient. Indices outside [0, N) are skipped (gathered rows read
// as 0), since a device kernel cannot throw, and recorded in the device error slot: the host
// throws the CPU kernels' message at its next synchronization (device_error.cuh).
#include "engine/core/dispatch.h"
#include "engine/cuda/device_error.cuh"
#include "engine/cuda/reduce.cuh"
#include "engine/ops/copy.h"
#include "engine/ops/gather_scatter.h"

namespace engine {
namespace cuda {

namespace {

// out[e] = x[index[i], c], times weight[i] when there is one (scatter_add_rows' gradient of its
// rows in one pass).
template <class T>
struct GatherFn {
  const T* x;
  const int32_t* index;
  const acc_t<T>* weight;  // may be null
  T* out;
  int64_t num_rows, d;
  DeviceErrorSlot* error;
  __device__ void operator()(int64_t e) const {
    const int64_t i = e / d, c = e % d;
    const int64_t row = index[i];
    const bool ok = row >= 0 && row < num_rows;
    if (!ok && c == 0) report_index_error(error, kGatherIndex, row, i, num_rows);
    if (!ok)
      out[e] = T(0);
    else if (weight)
      out[e] = weight[i] * static_cast<acc_t<T>>(x[row * d + c]);
    else
      out[e] = x[row * d + c];
  }
};

// Weights and sums are acc_t<T>: f32 for bf16 rows (gates stay f32; a token's rows are summed in
// f32 and rounded once, as on the CPU).
// Pitfall: colliding rows are summed in whatever order the atomics land, so float results can
// differ in the last bits between runs (unlike the CPU's column split). f64 atomicAdd: sm_60+.
template <class T>
struct ScatterAddFn {
  const T* src;
  const int32_t* index;
  const acc_t<T>* weight;  // may be null
  acc_t<T>* out;
  int64_t num_rows, d;
  DeviceErrorSlot* error;
  __device__ void operator()(int64_t e) const {
    const int64_t i = e / d, c = e % d;
    const int64_t row = index[i];
    if (row < 0 || row >= num_rows) {
      if (c == 0) report_index_error(error, kScatterIndex, row, i, num_rows);
      return;
    }
    const acc_t<T> v = src[e];
    atomicAdd(out + row * d + c, weight ? weight[i] * v : v);
  }
};

// dweight[i] = dot(dout[index[i]], src[i]), one block per i.
template <class T>
__global__ void rows_dot_kernel(const T* dout, const int32_t* index, const T* src, int64_t m, int64_t num_rows,
                                int64_t d, acc_t<T>* dweight, DeviceErrorSlot* error) {
  CUDA_ROW_LOOP(i, m) {
    const int64_t row = index[i];
    if (row < 0 || row >= num_rows) {  // uniform across the block
      if (threadIdx.x == 0) {
        dweight[i] = acc_t<T>(0);
        report_index_error(error, kRowsDotIndex, row, i, num_rows);
      }
      continue;
    }
    const double acc = block_dot(dout + row * d, src + i * d, d);
    if (threadIdx.x == 0) dweight[i] = static_cast<acc_t<T>>(acc);
  }
}

}  // namespace

void gather_rows(const Tensor& x, const Tensor& index, Tensor& out) {
  const int64_t m = index.numel(), d = x.size(1);
  DeviceGuard guard(x.device());
  DISPATCH_ALL(x.dtype(), "gather_rows", {
    launch_elementwise(m * d, GatherFn<scalar_t>{x.data<scalar_t>(), index.data<int32_t>(), nullptr, out.data<scalar_t>(),
                                                 x.size(0), d, device_error_slot()});
  });
}

void gather_rows_scaled(const Tensor& x, const Tensor& index, const Tensor& weight, Tensor& out) {
  const int64_t m = index.numel(), d = x.size(1);
  DeviceGuard guard(x.device());
  DISPATCH_FLOAT_BF16(x.dtype(), "gather_rows_scaled", {
    launch_elementwise(m * d, GatherFn<scalar_t>{x.data<scalar_t>(), index.data<int32_t>(),
                                                 weight.data<acc_t<scalar_t>>(), out.data<scalar_t>(), x.size(0), d,
                                                 device_error_slot()});
  });
}

void scatter_add_rows(const Tensor& src, const Tensor& index, const Tensor& weight, Tensor& out) {
  const int64_t m = index.numel(), d = out.size(1);
  DeviceGuard guard(src.device());
  // out arrives zero-filled; bf16 rows are summed into an f32 buffer, then rounded once.
  Tensor sums = out.dtype() == DType::bf16 ? Tensor::zeros(out.shape(), DType::f32, out.device()) : out;
  DISPATCH_FLOAT_BF16(src.dtype(), "scatter_add_rows", {
    using acc = acc_t<scalar_t>;
    launch_elementwise(m * d, ScatterAddFn<scalar_t>{src.data<scalar_t>(), index.data<int32_t>(),
                                                     weight.defined() ? weight.data<acc>() : nullptr, sums.data<acc>(),
                                                     out.size(0), d, device_error_slot()});
  });
  if (!sums.same_storage(out)) cast(sums, out);
}

void rows_dot(const Tensor& dout, const Tensor& index, const Tensor& src, Tensor& dweight) {
  const int64_t m = index.numel(), d = src.size(1);
  if (m == 0) return;
  DeviceGuard guard(src.device());
  DISPATCH_FLOAT_BF16(src.dtype(), "rows_dot", {
    rows_dot_kernel<<<row_blocks(m), row_threads(d), 0, stream()>>>(dout.data<scalar_t>(), index.data<int32_t>(),
                                                                    src.data<scalar_t>(), m, dout.size(0), d,
                                                                    dweight.data<acc_t<scalar_t>>(), device_error_slot());
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace cuda
}  // namespace engine
