// moe-inspect's library: a readable summary of a checkpoint (what it is, where training stood,
// the config, every tensor with its shape, and the per-layer expert load at the last log step).
#pragma once
#include <ostream>
#include <string>

#include "tools/lib/checkpoint/checkpoint.h"

namespace inspect {

struct Options {
  bool config = true;   // print the resolved YAML
  bool tensors = true;  // list every tensor
};

void describe(const ckpt::Checkpoint& c, const std::string& path, std::ostream& out, const Options& options = {});

}  // namespace inspect
