// The CUDA runtime glue (engine/cuda/runtime.h): what it reports about the device.
#include <catch2/catch.hpp>

#include "engine/cuda/runtime.h"

using namespace engine;

TEST_CASE("cuda sm_count is the device's multiprocessor count, asked once", "[cuda][runtime]") {
  cuda::DeviceGuard guard(0);
  cudaDeviceProp props{};
  CUDA_CHECK(cudaGetDeviceProperties(&props, 0));
  CHECK(cuda::sm_count() == props.multiProcessorCount);
  CHECK(cuda::sm_count() == cuda::sm_count());
}
