// CUDA runtime glue shared by every .cu file: error-checking macros, the device guard, the
// per-thread library handles and the stream every op runs on.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "engine/core/device.h"

namespace engine {
namespace cuda {

// Throws std::runtime_error "<library> error at file:line: <what> (<expr>)".
[[noreturn]] void throw_error(const char* library, const char* what, const char* expr, const char* file, int line);

// The stream every kernel, library call and memcpy is issued on: the legacy default stream, so
// all work runs in issue order. The caching allocator relies on that: a freed block may be
// handed out again while a kernel that used it is still queued, which is safe only because
// every later use is queued behind it on the same stream.
inline cudaStream_t stream() { return 0; }

// Makes `device` current for the guard's lifetime, so kernels and allocations of a tensor on
// cuda:1 go to that device even when the calling thread last used cuda:0.
class DeviceGuard {
 public:
  explicit DeviceGuard(Device device);
  explicit DeviceGuard(int index);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

[[noreturn]] void throw_sync_error(cudaError_t err, const char* expr, const char* file, int line);

// What CUDA_CHECK_LAUNCH does after every launch (see there).
void check_launch(const char* file, int line);
bool sync_after_launch();  // ENGINE_CUDA_SYNC_LAUNCHES=1, read once

// Library handles for the current device, created on first use by each thread and bound to
// stream(). They are never destroyed: a thread_local destructor could run after the CUDA
// context is torn down at process exit.
cublasHandle_t cublas_handle();
cudnnHandle_t cudnn_handle();

// The current device's number of streaming multiprocessors (cudaDevAttrMultiProcessorCount),
// asked once per device and cached: launch sizes scale with it rather than assuming one GPU.
int sm_count();

// v as a cuBLAS int; throws std::invalid_argument "op: what = v exceeds cuBLAS's 32-bit limit"
// when it does not fit.
int cublas_int(int64_t v, const char* op, const char* what);

}  // namespace cuda

// Declared by engine/core/device.cpp and engine/core/allocator.cpp.
bool cuda_device_usable(std::string* why);
class CachingAllocator;
CachingAllocator& cuda_allocator(int index);

}  // namespace engine

#define CUDA_CHECK(expr)                                                                               \
  do {                                                                                                 \
    const cudaError_t engine_err_ = (expr);                                                            \
    if (engine_err_ != cudaSuccess)                                                                    \
      ::engine::cuda::throw_error("CUDA", cudaGetErrorString(engine_err_), #expr, __FILE__, __LINE__); \
  } while (0)

#define CUBLAS_CHECK(expr)                                                                                 \
  do {                                                                                                     \
    const cublasStatus_t engine_st_ = (expr);                                                              \
    if (engine_st_ != CUBLAS_STATUS_SUCCESS)                                                               \
      ::engine::cuda::throw_error("cuBLAS", cublasGetStatusString(engine_st_), #expr, __FILE__, __LINE__); \
  } while (0)

#define CUDNN_CHECK(expr)                                                                               \
  do {                                                                                                  \
    const cudnnStatus_t engine_st_ = (expr);                                                            \
    if (engine_st_ != CUDNN_STATUS_SUCCESS)                                                             \
      ::engine::cuda::throw_error("cuDNN", cudnnGetErrorString(engine_st_), #expr, __FILE__, __LINE__); \
  } while (0)

// For a call that waits on queued work (a copy to or from the host, a stream synchronize): an
// error there is usually an earlier kernel's fault, reported at the first wait after it. The
// message says so and how to find the kernel.
#define CUDA_CHECK_SYNC(expr)                                                                                 \
  do {                                                                                                        \
    const cudaError_t engine_err_ = (expr);                                                                   \
    if (engine_err_ != cudaSuccess) ::engine::cuda::throw_sync_error(engine_err_, #expr, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: reports a bad launch configuration here rather than at the next sync.
// With ENGINE_CUDA_SYNC_LAUNCHES=1 in the environment it also waits for the kernel and checks
// its result and the device error flag, so a fault inside a kernel is reported with the file
// and line of its launch (the op's .cu file) instead of at the next copy. Slow: for debugging.
#define CUDA_CHECK_LAUNCH() ::engine::cuda::check_launch(__FILE__, __LINE__)
