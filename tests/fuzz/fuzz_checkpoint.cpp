// libFuzzer target: the checkpoint reader must answer any file with a checkpoint or a
// CheckpointError, never a crash or another exception type. The bytes go to a file because
// HDF5 reads files.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "tools/lib/checkpoint/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/moe_fuzz_checkpoint_" + std::to_string(::getpid()) + ".h5";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    ckpt::read_checkpoint(path);
  } catch (const ckpt::CheckpointError&) {
  }
  return 0;
}
