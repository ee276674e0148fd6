// CUDA runtime glue: error reporting, device detection, the per-device caching allocators
// (raw cudaMalloc/cudaFree underneath) and the per-thread cuBLAS/cuDNN handles.
#include <atomic>
#include <climits>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "engine/core/allocator.h"
#include "engine/core/cuda_versions.h"
#include "engine/core/tensor.h"
#include "engine/cuda/device_error.cuh"
#include "engine/cuda/runtime.h"

namespace engine {
namespace cuda {

void throw_error(const char* library, const char* what, const char* expr, const char* file, int line) {
  throw std::runtime_error(std::string(library) + " error at " + file + ":" + std::to_string(line) + ": " + what +
                           " (" + expr + ")");
}

int cublas_int(int64_t v, const char* op, const char* what) {
  if (v > INT_MAX) fail(op, std::string(what) + " = " + std::to_string(v) + " exceeds cuBLAS's 32-bit limit");
  return static_cast<int>(v);
}

void throw_sync_error(cudaError_t err, const char* expr, const char* file, int line) {
  std::string what = cudaGetErrorString(err);
  if (!sync_after_launch())
    what +=
        " (likely raised by an earlier kernel and reported at this wait; rerun with ENGINE_CUDA_SYNC_LAUNCHES=1 "
        "to stop at the launch that faulted)";
  throw_error("CUDA", what.c_str(), expr, file, line);
}

bool sync_after_launch() {
  static const bool on = [] {
    const char* v = std::getenv("ENGINE_CUDA_SYNC_LAUNCHES");
    return v && std::string(v) == "1";
  }();
  return on;
}

void check_launch(const char* file, int line) {
  const cudaError_t launch = cudaGetLastError();
  if (launch != cudaSuccess) throw_error("CUDA", cudaGetErrorString(launch), "kernel launch", file, line);
  if (!sync_after_launch()) return;
  const cudaError_t run = cudaStreamSynchronize(stream());
  if (run != cudaSuccess)
    throw_error("CUDA", cudaGetErrorString(run), "kernel run, checked by ENGINE_CUDA_SYNC_LAUNCHES=1", file, line);
  check_device_errors();
}

DeviceGuard::DeviceGuard(Device device) : DeviceGuard(device.index) {}

DeviceGuard::DeviceGuard(int index) {
  int current = 0;
  CUDA_CHECK(cudaGetDevice(&current));
  if (current != index) {
    CUDA_CHECK(cudaSetDevice(index));
    previous_ = current;
  }
}

DeviceGuard::~DeviceGuard() {
  if (previous_ >= 0) cudaSetDevice(previous_);  // no throw from a destructor
}

namespace {
int current_device() {
  int index = 0;
  CUDA_CHECK(cudaGetDevice(&index));
  return index;
}

// This thread's handle for the current device, created by `create` on first use.
template <class Handle, class Create>
Handle thread_device_handle(std::vector<Handle>& handles, Create create) {
  const int index = current_device();
  if (static_cast<int>(handles.size()) <= index) handles.resize(index + 1, nullptr);
  if (!handles[index]) handles[index] = create();
  return handles[index];
}
}  // namespace

cublasHandle_t cublas_handle() {
  thread_local std::vector<cublasHandle_t> handles;
  return thread_device_handle(handles, [] {
    cublasHandle_t h = nullptr;
    CUBLAS_CHECK(cublasCreate(&h));
    CUBLAS_CHECK(cublasSetStream(h, stream()));
    // Default math mode: no TF32 for f32 GEMMs, so CUDA results stay within f32 rounding of the
    // CPU's (TF32 would cost ~1e-3 relative accuracy).
    CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
    return h;
  });
}

cudnnHandle_t cudnn_handle() {
  thread_local std::vector<cudnnHandle_t> handles;
  return thread_device_handle(handles, [] {
    cudnnHandle_t h = nullptr;
    CUDNN_CHECK(cudnnCreate(&h));
    CUDNN_CHECK(cudnnSetStream(h, stream()));
    return h;
  });
}

namespace {

// Launched by nothing: cudaFuncGetAttributes on it tells whether this binary has code the
// device can run (a build for sm_90 cannot run on an older GPU).
__global__ void probe_kernel() {}

constexpr int kMaxDevices = 16;

// The allocator's raw functions take no device argument, so each device index gets its own
// instantiation. Only cudaErrorMemoryAllocation means out of memory: it returns nullptr (the
// allocator then frees its cache, retries once, and reports the bytes and its counters), and
// the error is cleared so it does not surface at an unrelated later check. Any other error is
// usually an earlier kernel's fault (sticky errors come back from every later call) and is
// thrown with CUDA's own message, so it is not mistaken for OOM.
template <int Index>
void* raw_alloc(size_t bytes) {
  DeviceGuard guard(Index);
  void* ptr = nullptr;
  const cudaError_t err = cudaMalloc(&ptr, bytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    return nullptr;
  }
  if (err != cudaSuccess)
    throw_error("CUDA", cudaGetErrorString(err),
                ("cudaMalloc of " + std::to_string(bytes) + " bytes on cuda:" + std::to_string(Index)).c_str(),
                __FILE__, __LINE__);
  return ptr;
}

template <int Index>
void raw_free(void* ptr) {
  DeviceGuard guard(Index);
  cudaFree(ptr);  // errors ignored: called from destructors and from release paths
}

template <int... I>
CachingAllocator* make_allocator(int index, std::integer_sequence<int, I...>) {
  using Pair = std::pair<CachingAllocator::RawAlloc, CachingAllocator::RawFree>;
  static const Pair table[] = {Pair{&raw_alloc<I>, &raw_free<I>}...};
  return new CachingAllocator(table[index].first, table[index].second, Device::cuda(index));
}

}  // namespace

int sm_count() {
  // Zero (static storage) until asked. Threads asking at once all store the same answer.
  static std::atomic<int> counts[kMaxDevices];
  const int index = current_device();
  if (index < kMaxDevices) {
    const int cached = counts[index].load(std::memory_order_relaxed);
    if (cached > 0) return cached;
  }
  int count = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, index));
  if (index < kMaxDevices) counts[index].store(count, std::memory_order_relaxed);
  return count;
}

}  // namespace cuda

bool cuda_device_usable(std::string* why) {
  // Versions first: with a driver older than the runtime, cudaGetDeviceCount only says
  // "insufficient", and the fix (which driver, or which toolkit to build with) is ours to name.
  const CudaVersions versions = cuda_versions();
  const std::string problem = version_problem(versions);
  if (!problem.empty()) {
    if (why) *why = problem + " [" + describe(versions) + "]";
    return false;
  }
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    // Without a driver or GPU this is an error (e.g. "CUDA driver version is insufficient"),
    // not a count of 0.
    cudaGetLastError();
    if (why) *why = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorString(err);
    return false;
  }
  if (count == 0) {
    if (why) *why = "no CUDA device found";
    return false;
  }
  cudaFuncAttributes attrs;
  const cudaError_t probe = cudaFuncGetAttributes(&attrs, cuda::probe_kernel);
  if (probe != cudaSuccess) {
    cudaGetLastError();
    if (why) {
      int major = 0, minor = 0;
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0);
      cudaGetLastError();
      *why = std::string("the device cannot run this build's kernels: ") + cudaGetErrorString(probe) +
             " (the GPU is sm_" + std::to_string(major * 10 + minor) +
             "; configure with -DCMAKE_CUDA_ARCHITECTURES=" + std::to_string(major * 10 + minor) + ")";
    }
    return false;
  }
  if (why) why->clear();
  return true;
}

CachingAllocator& cuda_allocator(int index) {
  if (index < 0 || index >= cuda::kMaxDevices)
    throw std::invalid_argument("cuda_allocator: device index " + std::to_string(index) + " out of range");
  static std::mutex mutex;
  // Never deleted: tensors in static storage may be freed after main returns.
  static CachingAllocator* allocators[cuda::kMaxDevices] = {};
  std::lock_guard<std::mutex> lock(mutex);
  if (!allocators[index])
    allocators[index] = cuda::make_allocator(index, std::make_integer_sequence<int, cuda::kMaxDevices>{});
  return *allocators[index];
}

}  // namespace engine
