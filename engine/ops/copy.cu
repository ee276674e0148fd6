// CUDA kernels for copies: fill, strided_copy (any strides on either side, up to 8 dims after
// merging), cast between f32/f64/i32, and copy_bytes for transfers between host and devices.
#include <cstring>

#include "engine/core/dispatch.h"
#include "engine/cuda/device_error.cuh"
#include "engine/cuda/launch.cuh"
#include "engine/ops/copy.h"

namespace engine {
namespace cuda {

namespace {

template <class T>
struct FillFn {
  T* out;
  T value;
  __device__ void operator()(int64_t i) const { out[i] = value; }
};

constexpr int kMaxDims = 8;

// Shape and both stride sets, passed to the kernel by value.
struct StridedLayout {
  int ndim = 0;
  int64_t shape[kMaxDims];
  int64_t src_stride[kMaxDims];
  int64_t dst_stride[kMaxDims];
};

// Drops size-1 axes and merges neighbours that are contiguous with each other on both sides,
// so typical views (a slice of rows, a transpose of the last two axes) need 2-3 dims.
StridedLayout merge_axes(const Tensor& src, const Tensor& dst) {
  StridedLayout out;
  ENGINE_CHECK(src.ndim() <= 64, "strided_copy", "too many axes in " + src.str());
  int64_t shape[64], ss[64], ds[64];
  int nd = 0;
  for (int a = 0; a < src.ndim(); ++a) {
    if (src.shape()[a] == 1) continue;
    shape[nd] = src.shape()[a];
    ss[nd] = src.strides()[a];
    ds[nd] = dst.strides()[a];
    if (nd > 0 && ss[nd - 1] == ss[nd] * shape[nd] && ds[nd - 1] == ds[nd] * shape[nd]) {
      shape[nd - 1] *= shape[nd];
      ss[nd - 1] = ss[nd];
      ds[nd - 1] = ds[nd];
    } else {
      ++nd;
    }
  }
  ENGINE_CHECK(nd <= kMaxDims, "strided_copy",
               "more than " + std::to_string(kMaxDims) + " non-mergeable axes in " + src.str());
  out.ndim = nd;
  for (int a = 0; a < nd; ++a) {
    out.shape[a] = shape[a];
    out.src_stride[a] = ss[a];
    out.dst_stride[a] = ds[a];
  }
  return out;
}

// Copies elements as raw words of their size: f32 and i32 share one kernel.
template <class W>
struct StridedCopyFn {
  const W* src;
  W* dst;
  StridedLayout layout;
  __device__ void operator()(int64_t i) const {
    int64_t rem = i, so = 0, dof = 0;
    for (int a = layout.ndim - 1; a >= 0; --a) {
      const int64_t idx = rem % layout.shape[a];
      rem /= layout.shape[a];
      so += idx * layout.src_stride[a];
      dof += idx * layout.dst_stride[a];
    }
    dst[dof] = src[so];
  }
};

template <class In, class Out>
struct CastFn {
  const In* src;
  Out* dst;
  __device__ void operator()(int64_t i) const { dst[i] = static_cast<Out>(src[i]); }
};

}  // namespace

void fill(Tensor& out, double value) {
  DeviceGuard guard(out.device());
  DISPATCH_ALL(out.dtype(), "fill", {
    launch_elementwise(out.numel(), FillFn<scalar_t>{out.data<scalar_t>(), static_cast<scalar_t>(value)});
  });
}

void strided_copy(const Tensor& src, Tensor& dst) {
  ENGINE_CHECK(src.device().is_cuda() && dst.device() == src.device(), "strided_copy",
               "both tensors must be on the same CUDA device: " + src.str() + " -> " + dst.str());
  const int64_t n = src.numel();
  if (n == 0) return;
  DeviceGuard guard(dst.device());
  const size_t esize = dtype_size(src.dtype());
  if (src.is_contiguous() && dst.is_contiguous()) {
    CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), n * esize, cudaMemcpyDeviceToDevice, stream()));
    return;
  }
  const StridedLayout layout = merge_axes(src, dst);
  if (esize == 4)
    launch_elementwise(n, StridedCopyFn<uint32_t>{static_cast<const uint32_t*>(src.raw_data()),
                                                  static_cast<uint32_t*>(dst.raw_data()), layout});
  else
    launch_elementwise(n, StridedCopyFn<uint64_t>{static_cast<const uint64_t*>(src.raw_data()),
                                                  static_cast<uint64_t*>(dst.raw_data()), layout});
}

void cast(const Tensor& src, Tensor& dst) {
  DeviceGuard guard(dst.device());
  const int64_t n = src.numel();
  DISPATCH_ALL(src.dtype(), "cast", {
    using in_t = scalar_t;
    const in_t* s = src.data<in_t>();
    DISPATCH_ALL(dst.dtype(), "cast", { launch_elementwise(n, CastFn<in_t, scalar_t>{s, dst.data<scalar_t>()}); });
  });
}

void copy_bytes(const Tensor& src, Tensor& dst) {
  ENGINE_CHECK(src.is_contiguous() && dst.is_contiguous(), "copy_bytes", "both tensors must be contiguous");
  ENGINE_CHECK(src.numel() == dst.numel() && src.dtype() == dst.dtype(), "copy_bytes",
               "size or type mismatch: " + src.str() + " -> " + dst.str());
  const size_t bytes = static_cast<size_t>(src.numel()) * dtype_size(src.dtype());
  if (bytes == 0) return;
  const Device from = src.device(), to = dst.device();
  if (from.is_cpu() && to.is_cpu()) {
    std::memcpy(dst.raw_data(), src.raw_data(), bytes);
  } else if (from.is_cpu()) {
    DeviceGuard guard(to);
    // Pageable host memory: cudaMemcpyAsync has copied the data to a staging buffer when it
    // returns, so the host buffer may be freed or reused right away, and unlike cudaMemcpy it
    // does not first wait for the queued work: uploading routing indices or a table does not
    // stall the step. The copy is queued on stream() behind the kernels before it.
    CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), bytes, cudaMemcpyHostToDevice, stream()));
  } else if (to.is_cpu()) {
    DeviceGuard guard(from);
    count_host_device_sync();
    CUDA_CHECK_SYNC(cudaMemcpy(dst.raw_data(), src.raw_data(), bytes, cudaMemcpyDeviceToHost));
    // The host may read dst as soon as we return; also surfaces errors of earlier kernels here.
    CUDA_CHECK_SYNC(cudaStreamSynchronize(stream()));
    check_device_errors();
  } else if (from == to) {
    DeviceGuard guard(to);
    CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), bytes, cudaMemcpyDeviceToDevice, stream()));
  } else {
    // Between two GPUs: the legacy default streams of both devices order this copy.
    CUDA_CHECK(cudaMemcpyPeer(dst.raw_data(), to.index, src.raw_data(), from.index, bytes));
  }
}

}  // namespace cuda
}  // namespace engine
