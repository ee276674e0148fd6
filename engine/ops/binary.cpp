#include "engine/ops/binary.h"

#include "engine/core/dispatch.h"
#include "engine/core/parallel.h"
#include "engine/core/tape.h"
#include "engine/ops/copy.h"
#include "engine/ops/reduce.h"
#include "engine/ops/shape.h"

namespace engine {

namespace {
bool is_suffix(const Shape& small, const Shape& big) {
  if (small.size() > big.size()) return false;
  return std::equal(small.begin(), small.end(), big.end() - small.size());
}

// The operand repeats with a period over the flat output: the kernels handle it directly.
bool is_periodic_in(const Shape& operand, const Shape& out) {
  return operand == out || shape_numel(operand) == 1 || is_suffix(operand, out);
}

// A stride-0 view of t over `shape` (right-aligned), materialized for the same-shape kernel.
Tensor expand_to(const Tensor& t, const Shape& shape) {
  const size_t lead = shape.size() - t.shape().size();
  Shape strides(shape.size(), 0);
  for (size_t i = 0; i < t.shape().size(); ++i)
    strides[lead + i] = t.shape()[i] == 1 && shape[lead + i] != 1 ? 0 : t.strides()[i];
  return kernel_input(make_view(t, shape, strides, t.offset()));
}
}  // namespace

Shape broadcast_shape(const Tensor& a, const Tensor& b, const char* op) {
  if (a.shape() == b.shape()) return a.shape();
  const Shape &sa = a.shape(), &sb = b.shape();
  Shape out(std::max(sa.size(), sb.size()));
  for (size_t i = 0; i < out.size(); ++i) {  // NumPy rules, aligned at the last axis
    const int64_t da = i < out.size() - sa.size() ? 1 : sa[i - (out.size() - sa.size())];
    const int64_t db = i < out.size() - sb.size() ? 1 : sb[i - (out.size() - sb.size())];
    if (da != db && da != 1 && db != 1)
      throw std::invalid_argument(std::string(op) + ": cannot broadcast shapes " + shape_str(sa) + " and " +
                                  shape_str(sb) + " (axis " + std::to_string(i) + ": " + std::to_string(da) + " vs " +
                                  std::to_string(db) + "; sizes must match or one be 1)");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Tensor reduce_to_shape(const Tensor& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  if (is_suffix(shape, grad.shape()) || shape_numel(shape) == 1) {
    const int64_t period = shape_numel(shape);
    Tensor rows = reshape(grad, {grad.numel() / period, period});
    return reshape(sum(rows, 0), shape);
  }
  // General broadcast: sum the leading axes the operand lacks, then its size-1 axes.
  Tensor g = grad;
  const size_t lead = grad.shape().size() - shape.size();
  for (size_t i = 0; i < lead; ++i) g = sum(g, 0);
  for (size_t i = 0; i < shape.size(); ++i)
    if (shape[i] == 1 && g.shape()[i] != 1) g = sum(g, static_cast<int>(i), true);
  return g;
}

Tensor binary(BinaryOp op, const Tensor& a_in, const Tensor& b_in) {
  static const char* names[] = {"add", "sub", "mul", "div"};
  const char* name = names[static_cast<int>(op)];
  ENGINE_CHECK(a_in.dtype() == b_in.dtype(), name,
               std::string("element types differ: ") + dtype_name(a_in.dtype()) + " vs " + dtype_name(b_in.dtype()));
  ENGINE_CHECK(a_in.device() == b_in.device(), name,
               "operands live on different devices: " + a_in.device().str() + " vs " + b_in.device().str());
  const Shape out_shape = broadcast_shape(a_in, b_in, name);
  // Suffix and scalar broadcasts run in the kernels; other NumPy broadcasts (a column [m, 1]
  // against [m, n]) materialize the expanded operand first.
  Tensor a = is_periodic_in(a_in.shape(), out_shape) ? kernel_input(a_in) : expand_to(a_in, out_shape);
  Tensor b = is_periodic_in(b_in.shape(), out_shape) ? kernel_input(b_in) : expand_to(b_in, out_shape);
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
  ON_DEVICE(out, binary, op, a, b, out);
  if (needs_grad({a_in, b_in})) {
    const Shape sa = a_in.shape(), sb = b_in.shape();
    // Only what the gradient formula reads is kept alive.
    Tensor keep_a = (op == BinaryOp::mul || op == BinaryOp::div) && b_in.requires_grad() ? a : Tensor();
    Tensor keep_b = (op == BinaryOp::mul || op == BinaryOp::div) ? b : Tensor();
    record(out, {a_in, b_in}, [op, sa, sb, keep_a, keep_b](const Tensor& dy, GradSink& g) {
      switch (op) {
        case BinaryOp::add:
          g.add(0, reduce_to_shape(dy, sa));
          g.add(1, reduce_to_shape(dy, sb));
          break;
        case BinaryOp::sub:
          g.add(0, reduce_to_shape(dy, sa));
          if (g.wants(1)) g.add(1, reduce_to_shape(neg(dy), sb));
          break;
        case BinaryOp::mul:
          if (g.wants(0)) g.add(0, reduce_to_shape(mul(dy, keep_b), sa));
          if (g.wants(1)) g.add(1, reduce_to_shape(mul(dy, keep_a), sb));
          break;
        case BinaryOp::div:
          if (g.wants(0)) g.add(0, reduce_to_shape(div(dy, keep_b), sa));
          if (g.wants(1)) g.add(1, reduce_to_shape(neg(div(mul(dy, keep_a), mul(keep_b, keep_b))), sb));
          break;
      }
    });
  }
  return out;
}

Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::div, a, b); }

Tensor affine(const Tensor& x_in, double alpha, double beta) {
  Tensor x = kernel_input(x_in);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  ON_DEVICE(y, affine, x, alpha, beta, y);
  if (needs_grad({x_in})) record(y, {x_in}, [alpha](const Tensor& dy, GradSink& g) { g.add(0, scale(dy, alpha)); });
  return y;
}

namespace cpu {

namespace {
// Span kernels: out[i] = a[i] op b[i], with a stride of 0 for an operand that is one value.
template <BinaryOp OP, class T>
ENGINE_SIMD_CLONES void binary_span(const T* __restrict a, int64_t sa, const T* __restrict b, int64_t sb,
                                    T* __restrict out, int64_t n) {
  if (sa == 1 && sb == 1) {
    for (int64_t i = 0; i < n; ++i) out[i] = apply_binary(OP, a[i], b[i]);
  } else if (sb == 0) {
    const T bv = b[0];
    for (int64_t i = 0; i < n; ++i) out[i] = apply_binary(OP, a[i], bv);
  } else {
    const T av = a[0];
    for (int64_t i = 0; i < n; ++i) out[i] = apply_binary(OP, av, b[i]);
  }
}

template <BinaryOp OP, class T>
void binary_loop(const T* a, int64_t na, const T* b, int64_t nb, T* out, int64_t n) {
  if ((na == n || na == 1) && (nb == n || nb == 1)) {
    const int64_t sa = na == n ? 1 : 0, sb = nb == n ? 1 : 0;
    parallel_for(n, 1 << 14,
                 [&](int64_t s, int64_t e) { binary_span<OP>(a + s * sa, sa, b + s * sb, sb, out + s, e - s); });
  } else {
    // One operand repeats with its own period: loop over rows of that period.
    const bool b_small = nb < n;
    const int64_t period = b_small ? nb : na;
    const int64_t rows = n / period;
    parallel_for(rows, std::max<int64_t>(1, (1 << 14) / period), [&](int64_t s, int64_t e) {
      for (int64_t r = s; r < e; ++r) {
        if (b_small)
          binary_span<OP>(a + r * period, 1, b, 1, out + r * period, period);
        else
          binary_span<OP>(a, 1, b + r * period, 1, out + r * period, period);
      }
    });
  }
}
}  // namespace

void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  DISPATCH_FLOAT_BF16(out.dtype(), "binary", {
    const scalar_t* pa = a.data<scalar_t>();
    const scalar_t* pb = b.data<scalar_t>();
    scalar_t* po = out.data<scalar_t>();
    const int64_t na = a.numel(), nb = b.numel(), n = out.numel();
    switch (op) {
      case BinaryOp::add:
        binary_loop<BinaryOp::add>(pa, na, pb, nb, po, n);
        break;
      case BinaryOp::sub:
        binary_loop<BinaryOp::sub>(pa, na, pb, nb, po, n);
        break;
      case BinaryOp::mul:
        binary_loop<BinaryOp::mul>(pa, na, pb, nb, po, n);
        break;
      case BinaryOp::div:
        binary_loop<BinaryOp::div>(pa, na, pb, nb, po, n);
        break;
    }
  });
}

void affine(const Tensor& x, double alpha, double beta, Tensor& out) {
  DISPATCH_FLOAT_BF16(out.dtype(), "affine", {
    using acc = acc_t<scalar_t>;
    const scalar_t* px = x.data<scalar_t>();
    scalar_t* po = out.data<scalar_t>();
    const acc al = static_cast<acc>(alpha), be = static_cast<acc>(beta);
    parallel_for(out.numel(), 1 << 14, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) po[i] = al * static_cast<acc>(px[i]) + be;
    });
  });
}

}  // namespace cpu
}  // namespace engine
