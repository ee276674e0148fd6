#include <atomic>
#include <mutex>
#include <stdexcept>
#include <string>

#include "engine/cuda/device_error.cuh"
#include "engine/cuda/runtime.h"

namespace engine {
namespace cuda {

namespace {
// Set once by device_error_slot(); read by check_device_errors() on any thread.
std::atomic<DeviceErrorSlot*> slot_if_created{nullptr};

const char* op_name(int kind) {
  switch (kind) {
    case kGatherIndex:
      return "gather_rows";
    case kScatterIndex:
      return "scatter_add_rows";
    case kRowsDotIndex:
      return "rows_dot";
    default:
      return "a CUDA kernel";
  }
}
}  // namespace

DeviceErrorSlot* device_error_slot() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Portable and mapped: under unified addressing (every platform CUDA 13 supports) the host
    // address is also the device address, in every device's context.
    void* p = nullptr;
    CUDA_CHECK(cudaHostAlloc(&p, sizeof(DeviceErrorSlot), cudaHostAllocPortable | cudaHostAllocMapped));
    *static_cast<DeviceErrorSlot*>(p) = DeviceErrorSlot{};
    slot_if_created.store(static_cast<DeviceErrorSlot*>(p));  // never freed: kernels may hold it until exit
  });
  return slot_if_created.load();
}

void check_device_errors() {
  volatile DeviceErrorSlot* slot = slot_if_created.load();
  if (!slot || slot->claimed == 0) return;
  const int kind = slot->kind;
  const long long value = slot->value, position = slot->position, bound = slot->bound;
  slot->kind = kNoDeviceError;
  slot->claimed = 0;  // last: a later error may be recorded again
  // The CPU kernels' message (engine/ops/gather_scatter.cpp), so tests and users see one text.
  throw std::invalid_argument(std::string(op_name(kind)) + ": index " + std::to_string(value) + " at position " +
                              std::to_string(position) + " is out of range [0, " + std::to_string(bound) + ")");
}

}  // namespace cuda
}  // namespace engine
