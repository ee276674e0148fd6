// Where a tensor's memory lives. Transfers between devices are always explicit (Tensor::to).
#pragma once
#include <cstdint>
#include <string>

namespace engine {

enum class DeviceKind : uint8_t { cpu, cuda };

struct Device {
  DeviceKind kind = DeviceKind::cpu;
  int index = 0;

  static Device cpu() { return {DeviceKind::cpu, 0}; }
  static Device cuda(int index = 0) { return {DeviceKind::cuda, index}; }
  bool is_cpu() const { return kind == DeviceKind::cpu; }
  bool is_cuda() const { return kind == DeviceKind::cuda; }
  bool operator==(const Device& o) const { return kind == o.kind && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
};

// True when this build has the CUDA backend AND a device can be used; `why` says otherwise.
bool cuda_available(std::string* why = nullptr);
int cuda_device_count();  // 0 without the CUDA backend or a device
void set_cuda_device(int index);  // the calling thread's current GPU (no-op without CUDA)
// Waits until the work queued on `device` has finished (a no-op on the CPU, where ops are
// synchronous): wall-clock measurements of device work need it.
void synchronize(Device device);
bool built_with_cuda();

// Times the host has waited for a device so far in this process: copies to the host (they
// wait for the queued work), synchronize() and the loss read-back. Uploads from the host do not
// wait (cudaMemcpyAsync stages pageable memory without a device synchronization). Training steps should not wait
// except where they must read a value; a test holds a step's count fixed. Always 0 on a CPU
// build.
uint64_t host_device_syncs();
void count_host_device_sync();  // called by the CUDA backend where it waits

}  // namespace engine
