#include "engine/ops/softmax.h"

#include <cmath>
#include <limits>

#include "engine/core/dispatch.h"
#include "engine/core/parallel.h"
#include "engine/core/tape.h"
#include "engine/ops/copy.h"

namespace engine {

namespace {

Tensor softmax_op(const Tensor& x_in, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  check(is_floating(x_in.dtype()) && x_in.ndim() >= 1, name, "needs a floating tensor with at least one axis, got " + x_in.str());
  Tensor x = kernel_input(x_in);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  ON_DEVICE(x, softmax_forward, x, log, y);
  if (needs_grad({x_in})) {
    Tensor saved = y.detach();  // both gradients are functions of the output alone
    record(y, {x_in}, [saved, log](const Tensor& dy, GradSink& g) {
      Tensor dx = Tensor::empty(dy.shape(), dy.dtype(), dy.device());
      ON_DEVICE(dy, softmax_backward, saved, dy, log, dx);
      g.add(0, dx);
    });
  }
  return y;
}

}  // namespace

Tensor softmax(const Tensor& x) { return softmax_op(x, false); }
Tensor log_softmax(const Tensor& x) { return softmax_op(x, true); }

Tensor logsumexp(const Tensor& x_in) {
  check(is_floating(x_in.dtype()) && x_in.ndim() >= 1, "logsumexp", "needs a floating tensor with at least one axis, got " + x_in.str());
  Tensor x = kernel_input(x_in);
  Shape out_shape(x.shape().begin(), x.shape().end() - 1);
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  ON_DEVICE(x, logsumexp_forward, x, out);
  if (needs_grad({x_in})) {
    Tensor lse = out.detach();
    record(out, {x_in}, [x, lse](const Tensor& dy, GradSink& g) {
      Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
      ON_DEVICE(dx, logsumexp_backward, x, lse, dy, dx);
      g.add(0, dx);
    });
  }
  return out;
}

namespace cpu {

namespace {
template <class T>
T row_max(const T* row, int64_t n) {
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t j = 0; j < n; ++j) m = row[j] > m ? row[j] : m;
  return m;
}

// Rows per parallel chunk: aim for ~8k elements of work per chunk.
int64_t row_grain(int64_t n) { return std::max<int64_t>(1, 8192 / std::max<int64_t>(n, 1)); }
}  // namespace

void softmax_forward(const Tensor& x, bool log, Tensor& y) {
  const int64_t n = x.size(-1), rows = n ? x.numel() / n : 0;
  DISPATCH_FLOAT(x.dtype(), "softmax", {
    const scalar_t* px = x.data<scalar_t>();
    scalar_t* py = y.data<scalar_t>();
    parallel_for(rows, row_grain(n), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const scalar_t* xr = px + r * n;
        scalar_t* yr = py + r * n;
        const scalar_t m = row_max(xr, n);
        scalar_t total = 0;
        for (int64_t j = 0; j < n; ++j) {
          const scalar_t v = std::exp(xr[j] - m);
          total += v;
          if (!log) yr[j] = v;
        }
        if (log) {
          const scalar_t shift = m + std::log(total);
          for (int64_t j = 0; j < n; ++j) yr[j] = xr[j] - shift;
        } else {
          const scalar_t inv = scalar_t(1) / total;
          for (int64_t j = 0; j < n; ++j) yr[j] *= inv;
        }
      }
    });
  });
}

void softmax_backward(const Tensor& y, const Tensor& dy, bool log, Tensor& dx) {
  const int64_t n = y.size(-1), rows = n ? y.numel() / n : 0;
  DISPATCH_FLOAT(y.dtype(), "softmax_backward", {
    const scalar_t* py = y.data<scalar_t>();
    const scalar_t* pd = dy.data<scalar_t>();
    scalar_t* px = dx.data<scalar_t>();
    parallel_for(rows, row_grain(n), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const scalar_t* yr = py + r * n;
        const scalar_t* dr = pd + r * n;
        scalar_t* xr = px + r * n;
        scalar_t acc = 0;
        if (log) {
          for (int64_t j = 0; j < n; ++j) acc += dr[j];
          for (int64_t j = 0; j < n; ++j) xr[j] = dr[j] - std::exp(yr[j]) * acc;
        } else {
          for (int64_t j = 0; j < n; ++j) acc += dr[j] * yr[j];
          for (int64_t j = 0; j < n; ++j) xr[j] = yr[j] * (dr[j] - acc);
        }
      }
    });
  });
}

void logsumexp_forward(const Tensor& x, Tensor& out) {
  const int64_t n = x.size(-1), rows = out.numel();
  DISPATCH_FLOAT(x.dtype(), "logsumexp", {
    const scalar_t* px = x.data<scalar_t>();
    scalar_t* po = out.data<scalar_t>();
    parallel_for(rows, row_grain(n), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const scalar_t* xr = px + r * n;
        const scalar_t m = row_max(xr, n);
        if (std::isinf(m) && m < 0) {  // empty or all -inf: the sum of nothing
          po[r] = m;
          continue;
        }
        scalar_t total = 0;
        for (int64_t j = 0; j < n; ++j) total += std::exp(xr[j] - m);
        po[r] = m + std::log(total);
      }
    });
  });
}

void logsumexp_backward(const Tensor& x, const Tensor& lse, const Tensor& dy, Tensor& dx) {
  const int64_t n = x.size(-1), rows = lse.numel();
  DISPATCH_FLOAT(x.dtype(), "logsumexp_backward", {
    const scalar_t* px = x.data<scalar_t>();
    const scalar_t* pl = lse.data<scalar_t>();
    const scalar_t* pd = dy.data<scalar_t>();
    scalar_t* pdx = dx.data<scalar_t>();
    parallel_for(rows, row_grain(n), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r)
        for (int64_t j = 0; j < n; ++j) pdx[r * n + j] = pd[r] * std::exp(px[r * n + j] - pl[r]);
    });
  });
}

}  // namespace cpu
}  // namespace engine
