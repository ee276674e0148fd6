// The versions engine/core/cuda_versions.h judges, read from the driver and the libraries this
// process loaded. None of these calls needs a GPU, so the probe can explain a missing or too
// old driver instead of only relaying cudaGetDeviceCount's error.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "engine/core/cuda_versions.h"

namespace engine {

CudaVersions cuda_versions() {
  CudaVersions v;
  if (cudaDriverGetVersion(&v.driver) != cudaSuccess) v.driver = 0;
  if (cudaRuntimeGetVersion(&v.runtime) != cudaSuccess) v.runtime = CUDART_VERSION;
  cudaGetLastError();  // neither call should leave an error behind for an unrelated later check
  v.cublas_built = CUBLAS_VERSION;
  int major = 0, minor = 0, patch = 0;
  if (cublasGetProperty(MAJOR_VERSION, &major) == CUBLAS_STATUS_SUCCESS &&
      cublasGetProperty(MINOR_VERSION, &minor) == CUBLAS_STATUS_SUCCESS &&
      cublasGetProperty(PATCH_LEVEL, &patch) == CUBLAS_STATUS_SUCCESS)
    v.cublas_loaded = major * 10000 + minor * 100 + patch;
  v.cudnn_built = CUDNN_VERSION;
  v.cudnn_loaded = static_cast<int>(cudnnGetVersion());
  return v;
}

}  // namespace engine
