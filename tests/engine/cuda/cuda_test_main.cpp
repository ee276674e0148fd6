// Entry point of the CPU-vs-CUDA suite. Without a usable device (no GPU, no driver, a driver
// too old for this build's runtime, or a GPU this build has no code for) it prints why and
// exits 77, which CTest reports as skipped. On a machine that is meant to have a GPU (the GPU
// check sets ENGINE_REQUIRE_CUDA=1) the same finding is a failure, so a broken GPU machine
// cannot pass as green.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "engine/core/cuda_versions.h"
#include "engine/core/device.h"
#include "engine/dist/world.h"

int main(int argc, char** argv) {
  std::printf("CUDA versions: %s\n", engine::describe(engine::cuda_versions()).c_str());
  std::string why;
  if (!engine::cuda_available(&why)) {
    const char* require = std::getenv("ENGINE_REQUIRE_CUDA");
    if (require && std::strcmp(require, "1") == 0) {
      std::printf("FAILED: ENGINE_REQUIRE_CUDA=1 but no CUDA device is usable: %s\n", why.c_str());
      return 1;
    }
    std::printf("SKIPPED: CUDA tests need a CUDA device: %s\n", why.c_str());
    return 77;
  }
  const int failed = Catch::Session().run(argc, argv);
  // Under mpirun the NCCL cases joined MPI; leaving without MPI_Finalize fails the launch.
  engine::dist::finalize();
  return failed;
}
