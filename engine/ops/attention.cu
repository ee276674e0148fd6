// CUDA causal attention: cuBLAS strided-batched GEMMs (through cuda::gemm) over the B*H heads
// around a masked-softmax row kernel, on [B*H, T, T] score buffers from the caching allocator
// (the probabilities forward leaves in `scores`, and dP in backward).
#include "engine/core/dispatch.h"
#include "engine/cuda/reduce.cuh"
#include "engine/ops/attention.h"
#include "engine/ops/copy.h"
#include "engine/ops/matmul.h"

namespace engine {
namespace cuda {

namespace {

// Forward:  S = Q K^T; P = softmax(scale * S + causal mask), lse per row; O = P V.
// Backward: P as forward left it, or recomputed from S and lse;
//           dV = P^T dO; dP = dO V^T; dS = scale * P * (dP - rowsum(dO * O)); dQ = dS K; dK = dS^T Q.

// Row r of the [B*H*T, T] scores is query t = r % T, which sees keys 0..t. Overwrites the raw
// scores with probabilities (0 above the diagonal) and writes lse = log sum_j exp(scale*s_j).
// Every row has at least one key (its own), so the max is finite for finite inputs.
template <class T>
__global__ void causal_softmax_kernel(T* scores, int64_t rows, int64_t seq, T scale, T* lse) {
  CUDA_ROW_LOOP(r, rows) {
    T* row = scores + r * seq;
    const int64_t valid = r % seq + 1;
    T m = -static_cast<T>(INFINITY);
    for (int64_t j = threadIdx.x; j < valid; j += blockDim.x) {
      const T s = scale * row[j];
      m = s > m ? s : m;
    }
    m = block_max(m);
    double total = 0.0;
    for (int64_t j = threadIdx.x; j < valid; j += blockDim.x) total += static_cast<double>(exp(scale * row[j] - m));
    const T l = m + static_cast<T>(log(block_sum(total)));
    if (threadIdx.x == 0) lse[r] = l;
    for (int64_t j = threadIdx.x; j < seq; j += blockDim.x) row[j] = j < valid ? exp(scale * row[j] - l) : T(0);
  }
}

// P = exp(scale * S - lse) on and below the diagonal, 0 above (in place on S).
template <class T>
struct RecomputeProbsFn {
  T* scores;
  const T* lse;
  int64_t seq;
  T scale;
  __device__ void operator()(int64_t i) const {
    const int64_t r = i / seq, j = i % seq;
    scores[i] = j <= r % seq ? exp(scale * scores[i] - lse[r]) : T(0);
  }
};

// delta[r] = dot(dO[r], O[r]) = sum_j P_rj dP_rj, the softmax Jacobian's correction term.
// dO and O are X (bf16 for bf16 q, k, v); delta is acc_t<X>, like P and dP.
template <class X>
__global__ void row_dot_kernel(const X* a, const X* b, int64_t rows, int64_t n, acc_t<X>* out) {
  CUDA_ROW_LOOP(r, rows) {
    const double d = block_dot(a + r * n, b + r * n, n);
    if (threadIdx.x == 0) out[r] = static_cast<acc_t<X>>(d);
  }
}

// dS = scale * P * (dP - delta), in place on dP (P is bf16 for bf16 attention).
template <class T, class P>
struct ScoreGradFn {
  const P* probs;
  T* dprobs;
  const T* delta;
  int64_t seq;
  T scale;
  __device__ void operator()(int64_t i) const {
    dprobs[i] = scale * static_cast<T>(probs[i]) * (dprobs[i] - delta[i / seq]);
  }
};

}  // namespace

void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, double scale, Tensor& out, Tensor& lse,
                       Tensor& scores) {
  const int64_t heads = q.size(0) * q.size(1), seq = q.size(2), dim = q.size(3);
  if (heads * seq == 0) return;
  DeviceGuard guard(q.device());
  // For bf16 q, k, v the softmax runs in f32 scratch (scores, lse) and P is stored in bf16 (the
  // `scores` tensor the op keeps), the products' operand.
  Tensor s = scores.dtype() == lse.dtype() ? scores : Tensor::empty(scores.shape(), lse.dtype(), q.device());
  gemm(batched_gemm_args(heads, seq, seq, dim, false, true), q, k, Tensor(), s);  // S = Q K^T
  DISPATCH_FLOAT(s.dtype(), "causal_attention", {
    causal_softmax_kernel<<<row_blocks(heads * seq), row_threads(seq), 0, stream()>>>(
        s.data<scalar_t>(), heads * seq, seq, static_cast<scalar_t>(scale), lse.data<scalar_t>());
    CUDA_CHECK_LAUNCH();
  });
  if (!s.same_storage(scores)) cast(s, scores);
  gemm(batched_gemm_args(heads, seq, dim, seq, false, false), scores, v, Tensor(), out);  // O = P V
}

void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        const Tensor& saved_probs, const Tensor& dout, double scale, Tensor& dq, Tensor& dk,
                        Tensor& dv) {
  const int64_t heads = q.size(0) * q.size(1), seq = q.size(2), dim = q.size(3);
  if (heads * seq == 0) return;
  DeviceGuard guard(q.device());
  const int64_t rows = heads * seq;
  const bool recompute = !saved_probs.defined();
  // bf16 q, k, v: P is bf16 (kept or recomputed through f32 scratch), dP and dS f32, dS rounded
  // as the products' operand.
  const DType acc = lse.dtype();
  Tensor probs = saved_probs;
  Tensor dprobs = Tensor::empty({heads, seq, seq}, acc, q.device());
  Tensor delta = Tensor::empty({rows}, acc, q.device());
  DISPATCH_FLOAT_BF16(q.dtype(), "causal_attention_backward", {
    using T = acc_t<scalar_t>;
    const T sc = static_cast<T>(scale);
    if (recompute) {  // S = Q K^T in acc's type, P from it and the saved lse (rounded for bf16)
      Tensor s = Tensor::empty({heads, seq, seq}, acc, q.device());
      gemm(batched_gemm_args(heads, seq, seq, dim, false, true), q, k, Tensor(), s);
      launch_elementwise(rows * seq, RecomputeProbsFn<T>{s.data<T>(), lse.data<T>(), seq, sc});
      probs = kernel_input(s, q.dtype());
    }
    row_dot_kernel<<<row_blocks(rows), row_threads(dim), 0, stream()>>>(dout.data<scalar_t>(), out.data<scalar_t>(),
                                                                        rows, dim, delta.data<T>());
    CUDA_CHECK_LAUNCH();
    gemm(batched_gemm_args(heads, seq, dim, seq, true, false), probs, dout, Tensor(), dv);   // dV = P^T dO
    gemm(batched_gemm_args(heads, seq, seq, dim, false, true), dout, v, Tensor(), dprobs);  // dP = dO V^T
    launch_elementwise(rows * seq,
                       ScoreGradFn<T, scalar_t>{probs.data<scalar_t>(), dprobs.data<T>(), delta.data<T>(), seq, sc});
    const Tensor ds = kernel_input(dprobs, q.dtype());
    gemm(batched_gemm_args(heads, seq, dim, seq, false, false), ds, k, Tensor(), dq);  // dQ = dS K
    gemm(batched_gemm_args(heads, seq, dim, seq, true, false), ds, q, Tensor(), dk);   // dK = dS^T Q
  });
}

}  // namespace cuda
}  // namespace engine
