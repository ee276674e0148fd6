#include "engine/core/allocator.h"

#include <cstdlib>
#include <new>
#include <stdexcept>
#include <string>

namespace engine {

CachingAllocator::~CachingAllocator() { release_cached(); }

namespace {
std::string mib(size_t bytes) { return std::to_string((bytes + (size_t{1} << 19)) >> 20) + " MiB"; }
}  // namespace

// Called with mutex_ held: reads stats_ directly.
std::string CachingAllocator::out_of_memory_message(size_t asked, size_t rounded) const {
  return "out of memory on " + device_.str() + ": asked for " + std::to_string(asked) + " bytes (" +
         std::to_string(rounded) + " rounded) with " + mib(stats_.bytes_in_use) + " in use by tensors, peak " +
         mib(stats_.peak_bytes) + ", cache already released (" + std::to_string(stats_.raw_allocations) +
         " raw allocations so far)";
}

size_t CachingAllocator::round_size(size_t bytes) {
  if (bytes == 0) bytes = 1;
  constexpr size_t kSmallStep = 512;
  if (bytes < (size_t{1} << 16)) return (bytes + kSmallStep - 1) / kSmallStep * kSmallStep;
  size_t pow2 = size_t{1} << (63 - __builtin_clzll(bytes));
  size_t step = pow2 / 8;
  return (bytes + step - 1) / step * step;
}

void* CachingAllocator::allocate(size_t bytes, size_t* rounded) {
  const size_t size = round_size(bytes);
  *rounded = size;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = free_blocks_.find(size);
  void* ptr = nullptr;
  if (it != free_blocks_.end() && !it->second.empty()) {
    ptr = it->second.back();
    it->second.pop_back();
    stats_.bytes_cached -= size;
    ++stats_.reuses;
  } else {
    ptr = raw_alloc_(size);
    if (!ptr) {
      // Out of memory: give the cache back and try once more before failing.
      for (auto& [block_size, blocks] : free_blocks_)
        for (void* p : blocks) raw_free_(p);
      free_blocks_.clear();
      stats_.bytes_cached = 0;
      ptr = raw_alloc_(size);
      if (!ptr) throw OutOfMemory(out_of_memory_message(bytes, size));
    }
    ++stats_.raw_allocations;
  }
  stats_.bytes_in_use += size;
  if (stats_.bytes_in_use > stats_.peak_bytes) stats_.peak_bytes = stats_.bytes_in_use;
  return ptr;
}

void CachingAllocator::deallocate(void* ptr, size_t rounded) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  free_blocks_[rounded].push_back(ptr);
  stats_.bytes_in_use -= rounded;
  stats_.bytes_cached += rounded;
}

MemoryStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_bytes = stats_.bytes_in_use;
}

void CachingAllocator::release_cached() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& [size, blocks] : free_blocks_)
    for (void* p : blocks) raw_free_(p);
  free_blocks_.clear();
  stats_.bytes_cached = 0;
}

namespace {
// 64-byte alignment: a cache line, and what AVX-512 loads like.
void* cpu_raw_alloc(size_t bytes) { return std::aligned_alloc(64, (bytes + 63) / 64 * 64); }
void cpu_raw_free(void* p) { std::free(p); }
}  // namespace

#ifdef ENGINE_WITH_CUDA
CachingAllocator& cuda_allocator(int index);  // engine/cuda/runtime.cu
#endif

CachingAllocator& allocator_for(Device device) {
  if (device.is_cpu()) {
    static CachingAllocator* cpu = new CachingAllocator(cpu_raw_alloc, cpu_raw_free);  // outlives static tensors
    return *cpu;
  }
#ifdef ENGINE_WITH_CUDA
  return cuda_allocator(device.index);
#else
  throw std::runtime_error("this build has no CUDA backend (configure with ENGINE_CUDA=ON and nvcc present)");
#endif
}

MemoryStats memory_stats(Device device) { return allocator_for(device).stats(); }

}  // namespace engine
