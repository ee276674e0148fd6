// Caching allocator, one per device. Freed blocks go to a free list keyed by their rounded
// size and are handed out again, so a training step that repeats the same shapes makes no
// cudaMalloc (or malloc) after the first step. Counters report bytes in use, peak and cached.
#pragma once
#include <cstddef>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/core/device.h"

namespace engine {

struct MemoryStats {
  size_t bytes_in_use = 0;     // handed out to live tensors (rounded sizes)
  size_t peak_bytes = 0;       // max of bytes_in_use since start or reset_peak()
  size_t bytes_cached = 0;     // held in free lists, ready for reuse
  size_t raw_allocations = 0;  // calls to the underlying malloc / cudaMalloc
  size_t reuses = 0;           // allocations served from the cache
};

// Thrown when the device has no room even after the cache is given back. A std::bad_alloc, so
// existing handlers still catch it, whose what() names the bytes asked, the device and the
// allocator's counters (a real OOM then reads differently from a kernel fault, which the CUDA
// raw allocator throws as a std::runtime_error with CUDA's own message).
class OutOfMemory : public std::bad_alloc {
 public:
  explicit OutOfMemory(std::string message) : message_(std::move(message)) {}
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  std::string message_;
};

class CachingAllocator {
 public:
  // raw_alloc returns nullptr only when the device is out of memory; any other failure throws.
  using RawAlloc = void* (*)(size_t bytes);
  using RawFree = void (*)(void* ptr);

  CachingAllocator(RawAlloc raw_alloc, RawFree raw_free, Device device = Device::cpu())
      : raw_alloc_(raw_alloc), raw_free_(raw_free), device_(device) {}
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // Returns a block of at least `bytes`; `*rounded` receives the size to pass back to deallocate.
  void* allocate(size_t bytes, size_t* rounded);
  void deallocate(void* ptr, size_t rounded);

  MemoryStats stats() const;
  void reset_peak();
  void release_cached();  // return every cached block to the system

  // Size classes: multiples of 512 B below 64 KiB, then steps of an eighth of a power of two, so
  // the waste stays under 12.5% and shapes that vary a little (MoE expert rows, which change
  // every step) share a few blocks instead of caching one per row count (peak RSS).
  static size_t round_size(size_t bytes);

 private:
  std::string out_of_memory_message(size_t asked, size_t rounded) const;

  RawAlloc raw_alloc_;
  RawFree raw_free_;
  Device device_;
  mutable std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_blocks_;
  MemoryStats stats_;
};

CachingAllocator& allocator_for(Device device);
MemoryStats memory_stats(Device device);

}  // namespace engine
