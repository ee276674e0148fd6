// Marks functions whose math is shared between the CPU loops and the CUDA kernels, so the
// CPU tests check the very expressions the GPU runs.
#pragma once

#if defined(__CUDACC__)
#define ENGINE_HD __host__ __device__ __forceinline__
#else
#define ENGINE_HD inline
#endif
