// CPU parallel loops. OpenMP with a static schedule: the split of work depends only on the
// range and the thread count, so results are bit-identical run to run (reductions inside a
// chunk run in a fixed order). The body is a template parameter, inlined: no indirect call
// per element.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstdint>

// Put on a CPU loop function (a span kernel, not a lambda) to compile it three times: for
// AVX-512 (x86-64-v4), for AVX2+FMA (x86-64-v3) and for the portable baseline; the loader picks
// the best clone this CPU supports. The default build stays portable and still runs 8- or
// 16-wide where it can. Functions it calls must be inlined (ENGINE_HD is always_inline) or
// they run at the baseline ISA.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define ENGINE_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define ENGINE_SIMD_CLONES
#endif

namespace engine {

inline int num_threads() { return omp_get_max_threads(); }

// Calls body(begin, end) on contiguous chunks of [0, n). Runs serially below `grain` items
// (thread start-up costs more than small loops).
template <class Body>
inline void parallel_for(int64_t n, int64_t grain, const Body& body) {
  if (n <= 0) return;
  if (n <= grain || omp_in_parallel() || omp_get_max_threads() == 1) {
    body(int64_t{0}, n);
    return;
  }
  const int64_t max_chunks = (n + grain - 1) / grain;
  const int threads = static_cast<int>(std::min<int64_t>(omp_get_max_threads(), max_chunks));
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    const int nt = omp_get_num_threads();
    const int64_t chunk = (n + nt - 1) / nt;
    const int64_t begin = std::min<int64_t>(n, t * chunk);
    const int64_t end = std::min<int64_t>(n, begin + chunk);
    if (begin < end) body(begin, end);
  }
}

}  // namespace engine
