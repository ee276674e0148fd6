// The verdicts the device probe gives on driver, runtime, cuBLAS and cuDNN versions: plain
// integers, so every pairing is checked here without a GPU.
#include <catch2/catch.hpp>
#include <string>

#include "engine/core/cuda_versions.h"

using namespace engine;

namespace {
CudaVersions matching() {
  CudaVersions v;
  v.driver = 13000;
  v.runtime = 13000;
  v.cublas_built = v.cublas_loaded = 130100;
  v.cudnn_built = v.cudnn_loaded = 92600;
  return v;
}
bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
}  // namespace

TEST_CASE("cuda versions: a matching set passes and is described", "[cuda_versions]") {
  const CudaVersions v = matching();
  CHECK(version_problem(v).empty());
  const std::string d = describe(v);
  CHECK(contains(d, "driver CUDA 13.0, runtime CUDA 13.0"));
  CHECK(contains(d, "cuBLAS 13.1.0 (built with 13.1.0)"));
  CHECK(contains(d, "cuDNN 9.26.0 (built with 9.26.0)"));
}

TEST_CASE("cuda versions: a driver older than the runtime's major version is refused with the fix", "[cuda_versions]") {
  CudaVersions v = matching();
  v.driver = 12080;  // an R570 driver: CUDA 12.8
  const std::string p = version_problem(v);
  INFO(p);
  CHECK(contains(p, "driver is too old"));
  CHECK(contains(p, "supports CUDA 12.8"));
  CHECK(contains(p, "built with CUDA 13.0"));
  CHECK(contains(p, "R580 or newer"));
  CHECK(contains(p, "CUDA 12 toolkit"));
  v.driver = 0;
  CHECK(contains(version_problem(v), "no NVIDIA driver"));
}

TEST_CASE("cuda versions: an older minor driver of the same major runs and is noted", "[cuda_versions]") {
  CudaVersions v = matching();
  v.runtime = 12080;
  v.driver = 12020;
  CHECK(version_problem(v).empty());
  CHECK(contains(describe(v), "minor version compatibility"));
}

TEST_CASE("cuda versions: cuBLAS or cuDNN from another release than the headers is refused", "[cuda_versions]") {
  CudaVersions v = matching();
  v.cublas_loaded = 120903;
  CHECK(contains(version_problem(v), "cuBLAS 12.9.3 was loaded but this build was compiled against 13.1.0"));
  v = matching();
  v.cudnn_loaded = 92000;  // an older minor: symbols the build uses may be missing
  CHECK(contains(version_problem(v), "cuDNN 9.20.0"));
  v.cudnn_loaded = 92700;  // a newer minor of the same major is fine
  CHECK(version_problem(v).empty());
}
