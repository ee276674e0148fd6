// What one process (one rank) of a run will hold in memory, estimated from its config before anything is allocated:
// parameters, their gradients and AdamW's two moments (f32 each), and the activations the tape
// keeps for backward in one micro-batch. The activation count is per token and per layer, read
// off what the forward saves (see memory_estimate.cpp); it is an estimate, checked against the
// allocator's measured peak by the tests, good to within a factor of two, which is enough to
// refuse a config that cannot fit (d_model 1e6, batch 1e9, 1e5 experts) with a message instead
// of std::bad_alloc or the OOM killer.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tools/lib/config/run_config.h"

namespace assemble {

struct MemoryPart {
  std::string what;               // "expert weights", "activations", ...
  double bytes = 0;
  std::vector<std::string> keys;  // the config keys that drive it
};

struct MemoryEstimate {
  int64_t parameters = 0;
  double parameter_bytes = 0, gradient_bytes = 0, optimizer_bytes = 0, activation_bytes = 0;
  std::vector<MemoryPart> parts;  // largest first: what the memory goes to, with its keys
  double total_bytes() const { return parameter_bytes + gradient_bytes + optimizer_bytes + activation_bytes; }
  // "1.2 GiB (parameters 30 MiB, gradients 30 MiB, AdamW 60 MiB, activations 1.1 GiB)"
  std::string summary() const;
};

MemoryEstimate estimate_memory(const runconfig::RunConfig& config);

// Bytes this process may still take: MemAvailable of /proc/meminfo, lowered to a cgroup's
// memory.max when one is set; 0 when neither can be read.
double available_memory_bytes();

// Throws runconfig::ConfigError when the estimate exceeds memory_limit GiB (or, with
// memory_limit 0, the available memory), naming the estimate, the limit and the keys that drive
// the largest parts. A CUDA run is checked only against memory_limit (the host's memory says
// nothing about the device's).
void check_memory(const runconfig::RunConfig& config, const MemoryEstimate& estimate, double available_bytes);

std::string format_bytes(double bytes);  // "300 KiB", "512 MiB", "1.2 GiB"

}  // namespace assemble
