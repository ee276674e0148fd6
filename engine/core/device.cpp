#include "engine/core/device.h"

#include <atomic>
#include <stdexcept>
#include <string>

#ifdef ENGINE_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace engine {

#ifdef ENGINE_WITH_CUDA
bool cuda_device_usable(std::string* why);  // engine/cuda/runtime.cu
namespace cuda {
void check_device_errors();  // engine/cuda/device_error.cu
}
#endif

namespace {
std::atomic<uint64_t> sync_count{0};
}

uint64_t host_device_syncs() { return sync_count.load(std::memory_order_relaxed); }
void count_host_device_sync() { sync_count.fetch_add(1, std::memory_order_relaxed); }

bool built_with_cuda() {
#ifdef ENGINE_WITH_CUDA
  return true;
#else
  return false;
#endif
}

bool cuda_available(std::string* why) {
#ifdef ENGINE_WITH_CUDA
  return cuda_device_usable(why);
#else
  if (why) *why = "this build has no CUDA backend (nvcc was not found or ENGINE_CUDA=OFF)";
  return false;
#endif
}

void set_cuda_device(int index) {
#ifdef ENGINE_WITH_CUDA
  cudaSetDevice(index);
#else
  (void)index;
#endif
}

void synchronize(Device device) {
#ifdef ENGINE_WITH_CUDA
  if (device.is_cpu()) return;
  int current = 0;
  cudaGetDevice(&current);
  if (current != device.index) cudaSetDevice(device.index);
  count_host_device_sync();
  const cudaError_t status = cudaDeviceSynchronize();
  if (current != device.index) cudaSetDevice(current);
  // A failed kernel reports here, at the next synchronization: say so instead of timing on.
  if (status != cudaSuccess)
    throw std::runtime_error(std::string("synchronize(") + device.str() + "): " + cudaGetErrorString(status) +
                             " (likely raised by an earlier kernel; ENGINE_CUDA_SYNC_LAUNCHES=1 stops at its launch)");
  cuda::check_device_errors();
#else
  (void)device;
#endif
}

int cuda_device_count() {
#ifdef ENGINE_WITH_CUDA
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
#else
  return 0;
#endif
}

}  // namespace engine
