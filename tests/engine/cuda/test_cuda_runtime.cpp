// The CUDA runtime glue (engine/cuda/runtime.h): what it reports about the device, how it
// reports out of memory and faults, and the synchronization counter.
#include <catch2/catch.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/core/allocator.h"
#include "engine/core/cuda_versions.h"
#include "engine/cuda/runtime.h"
#include "engine/engine.h"

using namespace engine;

TEST_CASE("cuda sm_count is the device's multiprocessor count, asked once", "[cuda][runtime]") {
  cuda::DeviceGuard guard(0);
  cudaDeviceProp props{};
  CUDA_CHECK(cudaGetDeviceProperties(&props, 0));
  CHECK(cuda::sm_count() == props.multiProcessorCount);
  CHECK(cuda::sm_count() == cuda::sm_count());
}

TEST_CASE("cuda versions pair on a machine whose device is usable", "[cuda][runtime]") {
  const CudaVersions v = cuda_versions();
  INFO(describe(v));
  CHECK(v.driver >= v.runtime / 1000 * 1000);
  CHECK(version_problem(v).empty());
}

TEST_CASE("cuda out of memory names the bytes and device and is not a fault", "[cuda][runtime][allocator]") {
  // Far beyond any GPU: cudaMalloc answers cudaErrorMemoryAllocation.
  try {
    Tensor t = Tensor::empty({int64_t{1} << 48}, DType::f32, Device::cuda(0));
    FAIL("no exception for 1 PiB");
  } catch (const OutOfMemory& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(what.find("out of memory on cuda:0") != std::string::npos);
    CHECK(what.find("asked for " + std::to_string((int64_t{1} << 48) * 4) + " bytes") != std::string::npos);
  }
  // The error was cleared: the device still works.
  CHECK(Tensor::full({3}, 2.0, DType::f32, Device::cuda(0)).to(Device::cpu()).to_vector() ==
        std::vector<double>{2, 2, 2});
}

TEST_CASE("cuda out-of-range indices throw the CPU's message at the next synchronization", "[cuda][runtime]") {
  const Tensor x = Tensor::full({4, 3}, 1.0, DType::f32, Device::cuda(0));
  const Tensor bad = Tensor::from_vector(std::vector<int32_t>{0, 7, 1}, {3}, Device::cuda(0));
  std::string cpu_message;
  try {
    gather_rows(x.to(Device::cpu()), bad.to(Device::cpu()));
  } catch (const std::invalid_argument& e) {
    cpu_message = e.what();
  }
  REQUIRE(!cpu_message.empty());
  const Tensor out = gather_rows(x, bad);  // queued; the kernel records the bad index
  CHECK_THROWS_WITH(out.to(Device::cpu()), cpu_message);
  // Reported once: the slot is clear again.
  CHECK(gather_rows(x, Tensor::from_vector(std::vector<int32_t>{3}, {1}, Device::cuda(0))).to(Device::cpu()).numel() ==
        3);
  const Tensor src = Tensor::full({3, 3}, 1.0, DType::f32, Device::cuda(0));
  const Tensor summed = scatter_add_rows(src, bad, 4);
  CHECK_THROWS_WITH(synchronize(Device::cuda(0)), "scatter_add_rows: index 7 at position 1 is out of range [0, 4)");
}

TEST_CASE("cuda host-device synchronizations are counted", "[cuda][runtime]") {
  const Tensor x = Tensor::full({5}, 1.0, DType::f32, Device::cuda(0));
  const uint64_t before = host_device_syncs();
  const Tensor y = add(x, x);  // queued only
  CHECK(host_device_syncs() == before);
  const Tensor up = Tensor::from_vector(std::vector<int32_t>{1, 2, 3}, {3}, Device::cuda(0));  // staged, no wait
  CHECK(host_device_syncs() == before);
  CHECK(up.to(Device::cpu()).to_int_vector() == std::vector<int32_t>{1, 2, 3});
  CHECK(host_device_syncs() == before + 1);
  y.to(Device::cpu());
  CHECK(host_device_syncs() == before + 2);
  synchronize(Device::cuda(0));
  CHECK(host_device_syncs() == before + 3);
}
