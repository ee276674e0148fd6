// Errors a kernel finds in its inputs (an index out of range) but cannot throw. The first one
// is recorded in a slot of mapped host memory; the host reads it after its next
// synchronization (a copy to the host, synchronize(), or every launch under
// ENGINE_CUDA_SYNC_LAUNCHES=1) and throws the CPU kernels' own message. Reading costs nothing
// extra: the slot is host memory, and it is read only where the host already waited.
#pragma once
#include <cstdint>

namespace engine {
namespace cuda {

// Which check failed, for the message: "<op>: <what> V at position P is out of range [0, B)".
enum DeviceErrorKind : int { kNoDeviceError = 0, kGatherIndex, kScatterIndex, kRowsDotIndex };

struct DeviceErrorSlot {
  unsigned long long claimed;  // 0 until the first error; the thread that sets it fills the rest
  int kind;
  long long value, position, bound;
};

// The process's slot (portable mapped pinned memory, one for all devices), created on first
// use; its address is valid in kernels on every device (unified addressing).
DeviceErrorSlot* device_error_slot();

// Throws std::invalid_argument for the recorded error, if any, and clears the slot. Call only
// after the device work that may have recorded it has finished.
void check_device_errors();

#ifdef __CUDACC__
// First error wins; later ones (often the same fault in other threads) are dropped.
__device__ inline void report_index_error(DeviceErrorSlot* slot, int kind, int64_t value, int64_t position,
                                          int64_t bound) {
  if (atomicCAS(&slot->claimed, 0ull, 1ull) != 0ull) return;
  slot->kind = kind;
  slot->value = value;
  slot->position = position;
  slot->bound = bound;
  __threadfence_system();
}
#endif

}  // namespace cuda
}  // namespace engine
