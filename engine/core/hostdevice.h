// Marks functions whose math is shared between the CPU loops and the CUDA kernels, so the
// CPU tests check the very expressions the GPU runs. On the host they are always inlined:
// that is what lets the per-ISA clones of CPU loops (ENGINE_SIMD_CLONES) vectorize them.
#pragma once

#if defined(__CUDACC__)
#define ENGINE_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define ENGINE_HD __attribute__((always_inline)) inline
#else
#define ENGINE_HD inline
#endif

// Host-only helpers called from ENGINE_SIMD_CLONES loops must be inlined to run at the clone's ISA.
#if defined(__GNUC__)
#define ENGINE_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define ENGINE_ALWAYS_INLINE inline
#endif
