// CUDA grouped GEMM: all groups of one f32 or f64 product in a single cuBLAS grouped-batched
// call (each group a batch of one, sizes per group; cuBLAS 12.5 or later), bf16 products through
// cublasGemmGroupedBatchedEx when cuBLAS takes their compute mode, and otherwise (or with an
// older cuBLAS) one gemm() per group. Same column-major trick as gemm() in matmul.cu: row-major
// C = op(A) op(B) is computed as column-major C^T = op(B)^T op(A)^T.
#include <string>
#include <type_traits>
#include <vector>

#include "engine/core/dispatch.h"
#include "engine/cuda/launch.cuh"
#include "engine/ops/grouped_linear.h"

namespace engine {
namespace cuda {

namespace {

// The per-group arrays cuBLAS takes: sizes, transposes and scalars on the host, the matrix
// pointers in device memory.
template <class T>
struct GroupedCall {
  std::vector<cublasOperation_t> op_first, op_second;  // cuBLAS's A = our B, cuBLAS's B = our A
  std::vector<int> m, n, k, ld_first, ld_second, ld_c, group_size;
  std::vector<T> alpha, beta;
  Tensor pointers;  // device: [first... | second... | c...], one 8-byte slot each
  const void* const* first = nullptr;
  const void* const* second = nullptr;
  void* const* c = nullptr;
};

template <class T>
GroupedCall<T> make_call(const std::vector<const GemmCall*>& groups) {
  GroupedCall<T> call;
  const size_t count = groups.size();
  std::vector<const void*> host(3 * count);
  for (size_t i = 0; i < count; ++i) {
    const GemmArgs& g = groups[i]->args;
    const int m = cublas_int(g.m, "grouped_gemm", "m"), n = cublas_int(g.n, "grouped_gemm", "n"),
              k = cublas_int(g.k, "grouped_gemm", "k");
    call.op_first.push_back(g.transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N);
    call.op_second.push_back(g.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N);
    call.m.push_back(n);
    call.n.push_back(m);
    call.k.push_back(k);
    call.ld_first.push_back(g.transpose_b ? k : n);
    call.ld_second.push_back(g.transpose_a ? m : k);
    call.ld_c.push_back(n);
    call.group_size.push_back(1);
    call.alpha.push_back(T(1));
    call.beta.push_back(static_cast<T>(g.beta));
    host[i] = groups[i]->b.raw_data();
    host[count + i] = groups[i]->a.raw_data();
    host[2 * count + i] = groups[i]->c.raw_data();
  }
  const Device device = groups.front()->c.device();
  call.pointers = Tensor::empty({static_cast<int64_t>(3 * count)}, DType::f64, device);  // 8 bytes per slot
  // From pageable memory the copy is staged before cudaMemcpyAsync returns, so `host` may go.
  CUDA_CHECK(cudaMemcpyAsync(call.pointers.raw_data(), host.data(), host.size() * sizeof(void*), cudaMemcpyHostToDevice,
                             stream()));
  void** slots = static_cast<void**>(call.pointers.raw_data());
  call.first = slots;
  call.second = slots + count;
  call.c = slots + 2 * count;
  return call;
}

#if CUBLAS_VERSION >= 120500  // the grouped-batched GEMMs arrived in cuBLAS 12.5
constexpr bool kHaveGroupedGemm = true;
cublasStatus_t grouped(const GroupedCall<float>& c, int count) {
  return cublasSgemmGroupedBatched(cublas_handle(), c.op_first.data(), c.op_second.data(), c.m.data(), c.n.data(),
                                   c.k.data(), c.alpha.data(), reinterpret_cast<const float* const*>(c.first),
                                   c.ld_first.data(), reinterpret_cast<const float* const*>(c.second),
                                   c.ld_second.data(), c.beta.data(), reinterpret_cast<float* const*>(c.c),
                                   c.ld_c.data(), count, c.group_size.data());
}
cublasStatus_t grouped(const GroupedCall<double>& c, int count) {
  return cublasDgemmGroupedBatched(cublas_handle(), c.op_first.data(), c.op_second.data(), c.m.data(), c.n.data(),
                                   c.k.data(), c.alpha.data(), reinterpret_cast<const double* const*>(c.first),
                                   c.ld_first.data(), reinterpret_cast<const double* const*>(c.second),
                                   c.ld_second.data(), c.beta.data(), reinterpret_cast<double* const*>(c.c),
                                   c.ld_c.data(), count, c.group_size.data());
}
// bf16 products of f32 tensors (MatmulPrecision::bf16): the same grouped call through the
// typed entry point, f32 operands with bf16 multiplies (as gemm() asks of
// cublasGemmStridedBatchedEx). cuBLAS releases that do not take this compute mode for grouped
// GEMMs answer NOT_SUPPORTED or INVALID_VALUE before launching anything; the caller then runs
// the groups one by one.
cublasStatus_t grouped_bf16(const GroupedCall<float>& c, int count) {
  return cublasGemmGroupedBatchedEx(cublas_handle(), c.op_first.data(), c.op_second.data(), c.m.data(), c.n.data(),
                                    c.k.data(), c.alpha.data(), c.first, CUDA_R_32F, c.ld_first.data(), c.second,
                                    CUDA_R_32F, c.ld_second.data(), c.beta.data(), c.c, CUDA_R_32F, c.ld_c.data(),
                                    count, c.group_size.data(), CUBLAS_COMPUTE_32F_FAST_16BF);
}
#else
constexpr bool kHaveGroupedGemm = false;
template <class T>
cublasStatus_t grouped(const GroupedCall<T>&, int) {
  return CUBLAS_STATUS_NOT_SUPPORTED;
}
cublasStatus_t grouped_bf16(const GroupedCall<float>&, int) { return CUBLAS_STATUS_NOT_SUPPORTED; }
#endif

// Whether cuBLAS took the grouped bf16 call (unknown until the first bf16 product).
enum class Bf16Grouped { untried, works, refused };
Bf16Grouped bf16_grouped = Bf16Grouped::untried;

// One grouped call for a bf16 product when cuBLAS takes it; false when it does not (nothing ran).
bool try_grouped_bf16(const std::vector<const GemmCall*>& batched, int count) {
  if (!kHaveGroupedGemm || bf16_grouped == Bf16Grouped::refused || batched.front()->c.dtype() != DType::f32)
    return false;
  const GroupedCall<float> call = make_call<float>(batched);
  const cublasStatus_t st = grouped_bf16(call, count);
  if (st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_INVALID_VALUE) {
    bf16_grouped = Bf16Grouped::refused;
    return false;
  }
  CUBLAS_CHECK(st);
  bf16_grouped = Bf16Grouped::works;
  return true;
}

GroupedGemmCounts counts;

}  // namespace

GroupedGemmCounts grouped_gemm_counts() { return counts; }

void grouped_gemm(const std::vector<GemmCall>& groups) {
  std::vector<const GemmCall*> batched;
  for (const GemmCall& group : groups) {
    const GemmArgs& g = group.args;
    if (g.m * g.n == 0) continue;
    ENGINE_CHECK(g.batch == 1, "grouped_gemm",
                 "each group is one product (batch 1), got batch " + std::to_string(g.batch));
    if (g.k == 0) {  // empty sum: gemm() fills C (and adds the bias) without cuBLAS
      Tensor c = group.c;
      gemm(g, group.a, group.b, group.bias, c);
      continue;
    }
    batched.push_back(&group);
  }
  if (batched.empty()) return;
  DeviceGuard guard(batched.front()->c.device());
  const int count = cublas_int(static_cast<int64_t>(batched.size()), "grouped_gemm", "group count");
  const bool bf16 = batched.front()->args.precision == MatmulPrecision::bf16;
  if (bf16 && count > 1 && try_grouped_bf16(batched, count)) {
    ++counts.grouped_calls;
  } else if (!kHaveGroupedGemm || count == 1 || bf16 || batched.front()->a.dtype() == DType::bf16) {
    // bf16 tensors (bf16 activations) run one product per group, through gemm()'s bf16 path.
    for (const GemmCall* group : batched) {
      Tensor c = group->c;
      gemm(group->args, group->a, group->b, Tensor(), c);
    }
    counts.one_by_one += count;
  } else {
    DISPATCH_FLOAT(batched.front()->c.dtype(), "grouped_gemm", {
      const GroupedCall<scalar_t> call = make_call<scalar_t>(batched);
      CUBLAS_CHECK(grouped(call, count));
    });
    ++counts.grouped_calls;
  }
  for (const GemmCall* group : batched) {
    if (!group->bias.defined()) continue;
    Tensor c = group->c;
    add_bias_rows(c, group->bias, group->args.m, group->args.n);
  }
}

}  // namespace cuda
}  // namespace engine
