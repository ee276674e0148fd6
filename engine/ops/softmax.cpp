#include "engine/ops/softmax.h"

#include <cmath>
#include <limits>

#include "engine/core/dispatch.h"
#include "engine/core/fast_math.h"
#include "engine/core/parallel.h"
#include "engine/core/tape.h"
#include "engine/ops/copy.h"

namespace engine {

namespace {

Tensor softmax_op(const Tensor& x_in, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  ENGINE_CHECK(is_floating(x_in.dtype()) && x_in.ndim() >= 1, name,
               "needs a floating tensor with at least one axis, got " + x_in.str());
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
  ENGINE_CHECK(is_floating(x_in.dtype()) && x_in.ndim() >= 1, "logsumexp",
               "needs a floating tensor with at least one axis, got " + x_in.str());
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
// Row kernels over rows [0, rows) of width n. Compiled per ISA; the `omp simd` reductions fix
// one summation order per binary, so results are reproducible run to run.
template <class T>
ENGINE_ALWAYS_INLINE T row_max(const T* row, int64_t n) {
  T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t j = 0; j < n; ++j) m = row[j] > m ? row[j] : m;
  return m;
}

template <class T>
ENGINE_SIMD_CLONES void softmax_rows(const T* __restrict x, T* __restrict y, int64_t rows, int64_t n, bool log) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    const T m = row_max(xr, n);
    T total = 0;
#pragma omp simd reduction(+ : total)
    for (int64_t j = 0; j < n; ++j) {
      const T v = engine_exp(xr[j] - m);
      total += v;
      yr[j] = v;
    }
    if (log) {
      const T shift = m + std::log(total);
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) yr[j] = xr[j] - shift;
    } else {
      const T inv = T(1) / total;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) yr[j] *= inv;
    }
  }
}

template <class T>
ENGINE_SIMD_CLONES void softmax_backward_rows(const T* __restrict y, const T* __restrict dy, T* __restrict dx,
                                              int64_t rows, int64_t n, bool log) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* yr = y + r * n;
    const T* dr = dy + r * n;
    T* xr = dx + r * n;
    T acc = 0;
    if (log) {
#pragma omp simd reduction(+ : acc)
      for (int64_t j = 0; j < n; ++j) acc += dr[j];
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) xr[j] = dr[j] - engine_exp(yr[j]) * acc;
    } else {
#pragma omp simd reduction(+ : acc)
      for (int64_t j = 0; j < n; ++j) acc += dr[j] * yr[j];
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) xr[j] = yr[j] * (dr[j] - acc);
    }
  }
}

template <class T>
ENGINE_SIMD_CLONES void logsumexp_rows(const T* __restrict x, T* __restrict out, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    const T m = row_max(xr, n);
    if (std::isinf(m) && m < 0) {  // empty or all -inf: the sum of nothing
      out[r] = m;
      continue;
    }
    T total = 0;
#pragma omp simd reduction(+ : total)
    for (int64_t j = 0; j < n; ++j) total += engine_exp(xr[j] - m);
    out[r] = m + std::log(total);
  }
}

template <class T>
ENGINE_SIMD_CLONES void logsumexp_backward_rows(const T* __restrict x, const T* __restrict lse, const T* __restrict dy,
                                                T* __restrict dx, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r)
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) dx[r * n + j] = dy[r] * engine_exp(x[r * n + j] - lse[r]);
}

// Rows per parallel chunk: aim for ~8k elements of work per chunk.
int64_t row_grain(int64_t n) { return std::max<int64_t>(1, 8192 / std::max<int64_t>(n, 1)); }
}  // namespace

void softmax_forward(const Tensor& x, bool log, Tensor& y) {
  const int64_t n = x.size(-1), rows = n ? x.numel() / n : 0;
  DISPATCH_FLOAT(x.dtype(), "softmax", {
    const scalar_t* px = x.data<scalar_t>();
    scalar_t* py = y.data<scalar_t>();
    parallel_for(rows, row_grain(n),
                 [&](int64_t b, int64_t e) { softmax_rows(px + b * n, py + b * n, e - b, n, log); });
  });
}

void softmax_backward(const Tensor& y, const Tensor& dy, bool log, Tensor& dx) {
  const int64_t n = y.size(-1), rows = n ? y.numel() / n : 0;
  DISPATCH_FLOAT(y.dtype(), "softmax_backward", {
    const scalar_t* py = y.data<scalar_t>();
    const scalar_t* pd = dy.data<scalar_t>();
    scalar_t* px = dx.data<scalar_t>();
    parallel_for(rows, row_grain(n), [&](int64_t b, int64_t e) {
      softmax_backward_rows(py + b * n, pd + b * n, px + b * n, e - b, n, log);
    });
  });
}

void logsumexp_forward(const Tensor& x, Tensor& out) {
  const int64_t n = x.size(-1), rows = out.numel();
  DISPATCH_FLOAT(x.dtype(), "logsumexp", {
    const scalar_t* px = x.data<scalar_t>();
    scalar_t* po = out.data<scalar_t>();
    parallel_for(rows, row_grain(n), [&](int64_t b, int64_t e) { logsumexp_rows(px + b * n, po + b, e - b, n); });
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
      logsumexp_backward_rows(px + b * n, pl + b, pd + b, pdx + b * n, e - b, n);
    });
  });
}

}  // namespace cpu
}  // namespace engine
