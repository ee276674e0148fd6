// moe-inspect's library: a readable summary of a checkpoint (what it is, where training stood,
// the config, the tensors, and the per-layer expert load at the last log step). Tensors are
// grouped by name with layer and expert numbers as `*` (E = 64 and 12 layers would list
// thousands), or listed one by one.
#pragma once
#include <ostream>
#include <string>

#include "tools/lib/checkpoint/checkpoint.h"

namespace inspect {

enum class TensorListing { none, grouped, every };

struct Options {
  bool config = true;  // print the resolved YAML
  TensorListing tensors = TensorListing::grouped;
};

void describe(const ckpt::Checkpoint& c, const std::string& path, std::ostream& out, const Options& options = {});

}  // namespace inspect
