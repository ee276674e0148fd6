#include "engine/core/cuda_versions.h"

namespace engine {

namespace {

std::string cuda_str(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }
std::string lib_str(int v) {
  return std::to_string(v / 10000) + "." + std::to_string(v % 10000 / 100) + "." + std::to_string(v % 100);
}

// The oldest driver branch for each CUDA major version (NVIDIA's compatibility table).
std::string driver_for(int runtime_major) {
  if (runtime_major >= 13) return "R580 or newer";
  if (runtime_major == 12) return "R525 or newer";
  return "one for CUDA " + std::to_string(runtime_major);
}

std::string library_problem(const char* name, int built, int loaded) {
  if (built == 0) return {};
  if (loaded == 0) return std::string(name) + " could not be loaded (built with " + lib_str(built) + ")";
  if (loaded / 10000 != built / 10000 || loaded / 100 < built / 100)
    return std::string(name) + " " + lib_str(loaded) + " was loaded but this build was compiled against " +
           lib_str(built) + ": put the matching library first on the loader path (LD_LIBRARY_PATH) or rebuild";
  return {};
}

}  // namespace

std::string describe(const CudaVersions& v) {
  std::string s = "driver " + (v.driver ? "CUDA " + cuda_str(v.driver) : std::string("none")) + ", runtime CUDA " +
                  cuda_str(v.runtime);
  if (v.driver && v.driver / 1000 == v.runtime / 1000 && v.driver < v.runtime)
    s += " (an older minor than the runtime: runs under minor version compatibility)";
  if (v.cublas_built) s += ", cuBLAS " + lib_str(v.cublas_loaded) + " (built with " + lib_str(v.cublas_built) + ")";
  if (v.cudnn_built) s += ", cuDNN " + lib_str(v.cudnn_loaded) + " (built with " + lib_str(v.cudnn_built) + ")";
  return s;
}

std::string version_problem(const CudaVersions& v) {
  const int major = v.runtime / 1000;
  if (v.driver == 0)
    return "no NVIDIA driver was found (CUDA " + cuda_str(v.runtime) + " needs " + driver_for(major) + ")";
  if (v.driver / 1000 < major)
    return "the NVIDIA driver is too old for this build: it supports CUDA " + cuda_str(v.driver) +
           " but the binary was built with CUDA " + cuda_str(v.runtime) + "; install a driver " + driver_for(major) +
           ", or rebuild with a CUDA " + std::to_string(v.driver / 1000) + " toolkit (CMAKE_CUDA_COMPILER)";
  std::string problem = library_problem("cuBLAS", v.cublas_built, v.cublas_loaded);
  if (problem.empty()) problem = library_problem("cuDNN", v.cudnn_built, v.cudnn_loaded);
  return problem;
}

#ifndef ENGINE_WITH_CUDA
CudaVersions cuda_versions() { return {}; }
#endif

}  // namespace engine
