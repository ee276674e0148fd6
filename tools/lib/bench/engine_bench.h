// engine-bench's library: matmul GFLOP/s against a direct oneDNN primitive on the same shapes,
// and elementwise / row-op bandwidth against oneDNN's primitives where they exist.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace bench {

struct MatmulRow {
  std::string what;
  int64_t M, K, N;
  double engine_gflops, onednn_gflops;
};
struct OpRow {
  std::string what;
  double ms, gbps;
  double onednn_gbps;  // 0: oneDNN has no such primitive
};

// quick: only the first three shapes (smoke tests).
std::vector<MatmulRow> bench_matmuls(int reps, bool quick);
std::vector<OpRow> bench_elementwise(int reps);  // 4096 x 1024 f32

void print_matmuls(const std::vector<MatmulRow>& rows, std::FILE* out);
void print_ops(const std::vector<OpRow>& rows, std::FILE* out);

}  // namespace bench
