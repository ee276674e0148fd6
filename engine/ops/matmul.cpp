#include "engine/ops/matmul.h"

#include "engine/core/dispatch.h"
#include "engine/core/parallel.h"
#include "engine/core/profile.h"
#include "engine/core/tape.h"
#include "engine/cpu/onednn_gemm.h"
#include "engine/ops/binary.h"
#include "engine/ops/copy.h"
#include "engine/ops/reduce.h"
#include "engine/ops/shape.h"

namespace engine {

// ---- precision ----------------------------------------------------------------------------

namespace {
thread_local MatmulPrecision current_precision = MatmulPrecision::f32;
}

const char* precision_name(MatmulPrecision p) { return p == MatmulPrecision::bf16 ? "bf16" : "f32"; }
MatmulPrecision matmul_precision() { return current_precision; }
MatmulPrecisionScope::MatmulPrecisionScope(MatmulPrecision p) : previous_(current_precision) { current_precision = p; }
MatmulPrecisionScope::~MatmulPrecisionScope() { current_precision = previous_; }

// ---- differentiable ops -------------------------------------------------------------------

namespace {

// The type a product runs in: bf16 when either operand is (the other, an f32 weight, is rounded
// for it: bf16 activations times f32 master weights), else the operands' common type.
DType product_dtype(const Tensor& a, const Tensor& b) {
  return a.dtype() == DType::bf16 || b.dtype() == DType::bf16 ? DType::bf16 : a.dtype();
}

// op(a) @ op(b) of dense operands of one type (2-D, or 3-D batched), into a new `out_dtype`
// tensor; not recorded. A bf16 product may write f32 (the gradient of an f32 weight).
Tensor product(const Tensor& a, const Tensor& b, bool ta, bool tb, DType out_dtype) {
  const bool batched = a.ndim() == 3;
  GemmArgs g;
  g.batch = batched ? a.size(0) : 1;
  g.transpose_a = ta;
  g.transpose_b = tb;
  g.precision = matmul_precision();
  g.m = ta ? a.size(-1) : a.size(-2);
  g.k = ta ? a.size(-2) : a.size(-1);
  const int64_t kb = tb ? b.size(-1) : b.size(-2);
  g.n = tb ? b.size(-2) : b.size(-1);
  ENGINE_CHECK(g.k == kb, "matmul",
               "inner dimensions differ: " + a.str() + (ta ? "^T" : "") + " @ " + b.str() + (tb ? "^T" : ""));
  ENGINE_CHECK(!batched || b.size(0) == g.batch, "matmul", "batch sizes differ: " + a.str() + " @ " + b.str());
  Tensor c = Tensor::empty(batched ? Shape{g.batch, g.m, g.n} : Shape{g.m, g.n}, out_dtype, a.device());
  ON_DEVICE(c, gemm, g, a, b, Tensor(), c);
  return c;
}

Tensor matmul_dense(const Tensor& a_in, const Tensor& b_in, bool ta, bool tb) {
  const DType dt = product_dtype(a_in, b_in);
  Tensor a = kernel_input(a_in, dt), b = kernel_input(b_in, dt);
  Tensor c = product(a, b, ta, tb, dt);
  if (needs_grad({a_in, b_in})) {
    Tensor sa = b_in.requires_grad() ? a : Tensor();  // dB reads A
    Tensor sb = a_in.requires_grad() ? b : Tensor();  // dA reads B
    // Each gradient is computed in its input's type: an f32 weight's straight from the bf16 product.
    const DType da_type = a_in.dtype(), db_type = b_in.dtype();
    record(c, {a_in, b_in},
           [sa, sb, ta, tb, da_type, db_type, precision = matmul_precision()](const Tensor& dc_in, GradSink& grads) {
             MatmulPrecisionScope scope(precision);
             Tensor dc = kernel_input(dc_in, sa.defined() ? sa.dtype() : sb.dtype());
             if (grads.wants(0)) grads.add(0, ta ? product(sb, dc, tb, true, da_type) : product(dc, sb, false, !tb, da_type));
             if (grads.wants(1)) grads.add(1, tb ? product(dc, sa, true, ta, db_type) : product(sa, dc, !ta, false, db_type));
           });
  }
  return c;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b) {
  const bool bf16_with_f32 = (a.dtype() == DType::bf16 && b.dtype() == DType::f32) ||
                            (a.dtype() == DType::f32 && b.dtype() == DType::bf16);
  ENGINE_CHECK((a.dtype() == b.dtype() && is_floating(a.dtype())) || bf16_with_f32, "matmul",
               "operands must share a floating type (or be bf16 and f32): " + a.str() + ", " + b.str());
  ENGINE_CHECK(a.device() == b.device(), "matmul", "operands on different devices: " + a.str() + ", " + b.str());
  if (a.ndim() == b.ndim() && (a.ndim() == 2 || a.ndim() == 3)) return matmul_dense(a, b, transpose_a, transpose_b);
  if (a.ndim() > 2 && b.ndim() == 2 && !transpose_a) {
    Shape lead(a.shape().begin(), a.shape().end() - 1);
    Tensor c = matmul_dense(flatten_rows(a), b, false, transpose_b);
    lead.push_back(c.size(1));
    return reshape(c, lead);
  }
  throw std::invalid_argument("matmul: unsupported operand ranks " + a.str() + " @ " + b.str() +
                              " (2-D @ 2-D, 3-D @ 3-D, or N-D @ 2-D without transposing the left side)");
}

Tensor linear(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias_in) {
  ENGINE_CHECK(weight_in.ndim() == 2, "linear", "weight must be [out, in], got " + weight_in.str());
  ENGINE_CHECK(x_in.size(-1) == weight_in.size(1), "linear",
               "input " + x_in.str() + " does not match weight " + weight_in.str());
  ENGINE_CHECK(!bias_in.defined() || (bias_in.ndim() == 1 && bias_in.size(0) == weight_in.size(0)), "linear",
               "bias must be [" + std::to_string(weight_in.size(0)) + "], got " + bias_in.str());
  ENGINE_CHECK(x_in.dtype() == weight_in.dtype() || (x_in.dtype() == DType::bf16 && weight_in.dtype() == DType::f32),
               "linear", "input " + x_in.str() + " and weight " + weight_in.str() +
                             " must share a type, or be bf16 activations with f32 weights");
  ENGINE_CHECK(!bias_in.defined() || bias_in.dtype() == weight_in.dtype(), "linear",
               "bias " + bias_in.str() + " must have the weight's type " + dtype_name(weight_in.dtype()));
  // A weight or bias left on another device would hand a host pointer to a kernel (or a device
  // pointer to the CPU loop): refuse it here, before anything is launched.
  ENGINE_CHECK(weight_in.device() == x_in.device() && (!bias_in.defined() || bias_in.device() == x_in.device()),
               "linear",
               "weight " + weight_in.str() + (bias_in.defined() ? " and bias " + bias_in.str() : std::string()) +
                   " must be on the input's device (" + x_in.str() + ")");
  const DType dt = x_in.dtype();
  // bf16 activations: the f32 weight is rounded once here, and the rounded copy serves backward.
  Tensor x = kernel_input(x_in), w = kernel_input(weight_in, dt);
  x = make_view(x, {x.numel() / x.size(-1), x.size(-1)}, {x.size(-1), 1}, x.offset());
  Tensor bias = bias_in.defined() ? kernel_input(bias_in) : Tensor();
  GemmArgs g;
  g.m = x.size(0);
  g.k = x.size(1);
  g.n = w.size(0);
  g.transpose_b = true;
  g.precision = matmul_precision();
  Tensor y = Tensor::empty({g.m, g.n}, dt, x.device());
  ON_DEVICE(y, gemm, g, x, w, bias, y);
  Shape out_shape = x_in.shape();
  out_shape.back() = g.n;
  Tensor out = make_view(y, out_shape, contiguous_strides(out_shape), 0);
  if (needs_grad({x_in, weight_in, bias_in})) {
    const Shape x_shape = x_in.shape();
    const DType w_type = weight_in.dtype();
    Tensor keep_x = weight_in.requires_grad() ? x : Tensor();
    Tensor keep_w = x_in.requires_grad() ? w : Tensor();
    record(out, {x_in, weight_in, bias_in},
           [keep_x, keep_w, x_shape, dt, w_type, precision = g.precision](const Tensor& dy_in, GradSink& grads) {
             MatmulPrecisionScope scope(precision);
             Tensor dy = kernel_input(flatten_rows(dy_in), dt);
             if (grads.wants(0)) {
               StageTimer t("bw:linear_dx");
               grads.add(0, reshape(product(dy, keep_w, false, false, dt), x_shape));
             }
             if (grads.wants(1)) {
               StageTimer t("bw:linear_dw");
               grads.add(1, product(dy, keep_x, true, false, w_type));  // f32 straight from the bf16 product
             }
             if (grads.wants(2)) {
               StageTimer t("bw:linear_db");
               grads.add(2, sum(dy, 0));  // a bf16 sum comes back in f32
             }
           });
  }
  return out;
}

// ---- CPU kernels --------------------------------------------------------------------------

namespace cpu {

namespace {

// Plain loop for f64 (gradient checks) where oneDNN has no kernel.
template <class T>
void gemm_reference(const GemmArgs& g, const T* A, const T* B, const T* bias, T* C) {
  parallel_for(g.batch * g.m, 1, [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      const int64_t bi = r / g.m, i = r % g.m;
      const T* a = A + bi * g.m * g.k;
      const T* b = B + bi * g.k * g.n;
      T* c = C + bi * g.m * g.n + i * g.n;
      for (int64_t j = 0; j < g.n; ++j) {
        T acc = bias ? bias[j] : T(0);
        for (int64_t p = 0; p < g.k; ++p) {
          const T av = g.transpose_a ? a[p * g.m + i] : a[i * g.k + p];
          const T bv = g.transpose_b ? b[j * g.k + p] : b[p * g.n + j];
          acc += av * bv;
        }
        c[j] = g.beta != 0.0 ? c[j] + acc : acc;
      }
    }
  });
}

}  // namespace

void gemm_concurrent(const std::vector<GemmCall>& calls) {
  if (try_gemm_concurrent(calls)) return;
  for (const GemmCall& call : calls) {
    Tensor c = call.c;
    gemm(call.args, call.a, call.b, call.bias, c);
  }
}

void gemm(const GemmArgs& g, const Tensor& a, const Tensor& b, const Tensor& bias, Tensor& c) {
  if (g.batch * g.m * g.n == 0) return;
  if (g.k == 0) {  // empty sum: C = beta*C (+ bias)
    if (g.beta == 0.0) fill(c, 0.0);
    if (bias.defined()) {
      Tensor rows = make_view(c, {g.batch * g.m, g.n}, {g.n, 1}, c.offset());
      Tensor tmp = Tensor::empty(rows.shape(), c.dtype(), c.device());
      binary(BinaryOp::add, rows, bias, tmp);
      strided_copy(tmp, rows);
    }
    return;
  }
  if (c.dtype() != DType::f64) {  // f32, bf16, or f32 from bf16 operands
    onednn_gemm(g, a, b, bias, c);
    return;
  }
  DISPATCH_FLOAT(c.dtype(), "gemm", {
    gemm_reference<scalar_t>(g, a.data<scalar_t>(), b.data<scalar_t>(),
                             bias.defined() ? bias.data<scalar_t>() : nullptr, c.data<scalar_t>());
  });
}

}  // namespace cpu
}  // namespace engine
