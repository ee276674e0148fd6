// engine-bench: the engine's matmul next to a direct oneDNN matmul on the same shapes, and the
// bandwidth of elementwise and row ops (tools/lib/bench/engine_bench.h does the measuring).
//
//   engine-bench [--reps N] [--threads T] [--quick]
#include <omp.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>
#include <oneapi/dnnl/dnnl.hpp>

#include "engine/engine.h"
#include "tools/cli.h"
#include "tools/lib/bench/engine_bench.h"

using namespace engine;
namespace po = boost::program_options;

int main(int argc, char** argv) {
  po::options_description opts("engine-bench: matmul GFLOP/s against direct oneDNN, elementwise GB/s");
  int reps = 20, threads = 0;
  opts.add_options()("help,h", "show this help")("reps", po::value<int>(&reps)->default_value(20),
                                                 "timed repetitions per case")(
      "threads", po::value<int>(&threads)->default_value(0), "OpenMP threads (0: OMP_NUM_THREADS or all cores)")(
      "quick", "only the first few matmul shapes (for smoke tests)");
  po::variables_map vm;
  if (auto status = tools::parse_flags(argc, argv, "engine-bench", opts, vm)) return *status;
  if (reps < 1 || threads < 0) {
    std::cerr << "engine-bench: --reps must be >= 1 and --threads >= 0\n";
    return 2;
  }
  if (threads > 0) omp_set_num_threads(threads);
  std::printf("engine-bench: %d OpenMP threads, median of %d runs, oneDNN %d.%d.%d\n\n", omp_get_max_threads(), reps,
              dnnl_version()->major, dnnl_version()->minor, dnnl_version()->patch);
  bench::print_matmuls(bench::bench_matmuls(reps, vm.count("quick") > 0), stdout);
  if (!vm.count("quick")) {
    std::printf("\n");
    bench::print_ops(bench::bench_elementwise(reps), stdout);
  }
  const MemoryStats mem = memory_stats(Device::cpu());
  std::printf("\nCPU allocator: peak %.1f MiB, %zu raw allocations, %zu reuses\n", mem.peak_bytes / 1048576.0,
              mem.raw_allocations, mem.reuses);
  return 0;
}
