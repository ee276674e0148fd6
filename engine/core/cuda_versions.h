// Which CUDA driver, runtime, cuBLAS and cuDNN a process found, against what it was built
// with, and whether they pair. The logic is plain integers so the CPU tests can check every
// verdict; engine/cuda/versions.cu fills the numbers from the libraries.
//
// Encodings are the libraries' own: CUDA versions as 1000*major + 10*minor (13000 = 13.0, from
// cudaDriverGetVersion / cudaRuntimeGetVersion), cuBLAS and cuDNN 9 as
// 10000*major + 100*minor + patch (CUBLAS_VERSION, CUDNN_VERSION).
#pragma once
#include <string>

namespace engine {

struct CudaVersions {
  int driver = 0;   // the newest CUDA version the installed driver supports; 0 = no driver
  int runtime = 0;  // the CUDA runtime this binary links
  int cublas_built = 0, cublas_loaded = 0;
  int cudnn_built = 0, cudnn_loaded = 0;
};

// "driver CUDA 12.8, runtime CUDA 13.0, cuBLAS 13.1.0 (built with 13.1.0), cuDNN 9.26.0 (...)".
std::string describe(const CudaVersions& v);

// Empty when the versions pair; otherwise what is wrong and what to do about it:
// - a driver older than the runtime's major version cannot run this build at all (CUDA 13 needs
//   an R580 or newer driver; a CUDA 12 toolkit runs on R525 and newer);
// - cuBLAS or cuDNN loaded from another major version than their headers, or an older minor
//   than the headers (symbols the build uses may be missing).
// A driver of the runtime's major version but an older minor is accepted (CUDA's minor version
// compatibility) and only noted by describe().
std::string version_problem(const CudaVersions& v);

// The versions found at run time; all zero in a build without CUDA.
CudaVersions cuda_versions();

}  // namespace engine
