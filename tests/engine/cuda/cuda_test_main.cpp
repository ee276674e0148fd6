// Entry point of the CPU-vs-CUDA suite. Without a usable device (no GPU, no driver, or a GPU
// this build has no code for) it prints why and exits 77, which CTest reports as skipped.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdio>
#include <string>

#include "engine/core/device.h"
#include "engine/dist/world.h"

int main(int argc, char** argv) {
  std::string why;
  if (!engine::cuda_available(&why)) {
    std::printf("SKIPPED: CUDA tests need a CUDA device: %s\n", why.c_str());
    return 77;
  }
  const int failed = Catch::Session().run(argc, argv);
  // Under mpirun the NCCL cases joined MPI; leaving without MPI_Finalize fails the launch.
  engine::dist::finalize();
  return failed;
}
