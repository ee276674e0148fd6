// The CPU GEMM backend: f32 products, bf16 products (bf16 tensors, or f32 ones rounded under
// MatmulPrecision::bf16) writing bf16 or f32, through oneDNN's matmul primitive. engine/ops/matmul.cpp's cpu::gemm and cpu::gemm_concurrent call it (f64 and
// empty products stay there), as engine/ops/*.cu call cuBLAS through engine/cuda/.
//
// Contract:
// - Primitives are cached for the process: creating one costs 0.1-0.35 ms, far more than a small
//   GEMM. A shape that repeats (dense layers, attention) gets a primitive made for it, and runs it
//   with only the data pointers swapped in.
// - MoE expert GEMMs change size every step: the forward and dX products in their row count m,
//   the weight gradient dW = dY^T X in its inner size k. A family (the key with m, or k, left out;
//   batch 1 only) that has seen kMaxExactSizes sizes runs any new size on one primitive with that
//   size left to run time, rather than creating (and JIT-compiling) a primitive per step and
//   growing the cache without end.
// - bf16 AMX kernels exist only for exact shapes (a runtime size falls back to a generic kernel at
//   half the speed), so on an AMX CPU a bf16 family past kMaxExactSizes is instead zero-padded in
//   bf16 copies to a multiple of kPadStep: exact primitives, at most max_size / kPadStep of them.
//   Without AMX (AVX512-BF16) bf16 tensors use runtime-size families like f32 ones, uncopied.
// - Thread-safe: calls are serialized; try_gemm_concurrent runs its set side by side within one.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/gemm.h"
#include "engine/core/tensor.h"

namespace engine {
namespace cpu {

constexpr int kMaxExactSizes = 8;
constexpr int64_t kPadStep = 64;

// C = op(A) op(B) (+ bias rows) (+ C when beta is 1) per GemmArgs; f32 tensors on the CPU,
// contiguous, with m, n and k > 0. Under MatmulPrecision::bf16 it throws naming "matmul" when
// this CPU has no bf16 kernel.
void onednn_gemm(const GemmArgs& args, const Tensor& a, const Tensor& b, const Tensor& bias, Tensor& c);

// Runs a set of independent products (as onednn_gemm would, up to the summation order) side by
// side, one per thread, and returns true; or returns false, having run nothing, where that would
// gain nothing: one product, one thread, already inside a parallel region, or any product not a
// non-empty one of batch 1 on f32 operands (f32 result) or, without AMX, on bf16 tensors. Products too big to share the threads run first, alone.
bool try_gemm_concurrent(const std::vector<GemmCall>& calls);

// Whether oneDNN has a bf16 matmul for this CPU (AVX-512 cores; AMX or AVX512-BF16 run it
// natively). On false, *reason says why.
bool bf16_matmul_supported(std::string* reason = nullptr);

// How many primitives the cache holds: made for one exact shape, or for a runtime-size family.
struct OneDnnCacheStats {
  size_t exact = 0, runtime = 0;
};
OneDnnCacheStats onednn_cache_stats();

}  // namespace cpu
}  // namespace engine
