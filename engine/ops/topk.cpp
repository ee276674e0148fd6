#include "engine/ops/topk.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "engine/core/dispatch.h"
#include "engine/core/parallel.h"
#include "engine/core/tape.h"
#include "engine/ops/copy.h"

namespace engine {

TopK topk(const Tensor& x_in, int64_t k) {
  const char* op = "topk";
  ENGINE_CHECK(x_in.defined() && x_in.ndim() >= 1, op, "needs a tensor with at least one axis, got " + x_in.str());
  ENGINE_CHECK(is_floating(x_in.dtype()), op, std::string("needs f32 or f64, got ") + dtype_name(x_in.dtype()));
  const int64_t n = x_in.size(-1);
  ENGINE_CHECK(k >= 1 && k <= n, op,
               "k must be in [1, " + std::to_string(n) + "] (the size of the last axis), got k = " + std::to_string(k));
  ENGINE_CHECK(n <= std::numeric_limits<int32_t>::max(), op,
               "last axis of " + std::to_string(n) + " is too long for i32 indices");
  Tensor x = kernel_input(x_in);
  Shape out_shape = x.shape();
  out_shape.back() = k;
  Tensor values = Tensor::empty(out_shape, x.dtype(), x.device());
  Tensor indices = Tensor::empty(out_shape, DType::i32, x.device());
  ON_DEVICE(x, topk_forward, x, k, values, indices);
  if (needs_grad({x_in})) {
    const Shape in_shape = x_in.shape();
    Tensor saved_indices = indices.detach();
    record(values, {x_in}, [in_shape, saved_indices](const Tensor& dvalues_in, GradSink& g) {
      Tensor dvalues = kernel_input(dvalues_in);
      Tensor dx = Tensor::zeros(in_shape, dvalues.dtype(), dvalues.device());
      ON_DEVICE(dvalues, topk_backward, saved_indices, dvalues, dx);
      g.add(0, dx);
    });
  }
  return {values, indices};
}

namespace cpu {

namespace {

// The selection order: larger first; NaN below every number; equal values (and NaNs among
// themselves) by lower index. A strict total order, so the result never depends on the
// algorithm or the thread split.
template <class T>
inline bool ranks_before(T a, int64_t a_index, T b, int64_t b_index) {
  const bool a_nan = std::isnan(a), b_nan = std::isnan(b);
  if (a_nan || b_nan) return a_nan == b_nan ? a_index < b_index : b_nan;
  return a > b || (a == b && a_index < b_index);
}

// Up to this k, a sorted buffer of k candidates (insertion, O(n) for typical rows) beats
// sorting an index array.
constexpr int64_t kInsertionMaxK = 32;

// Keeps the best k of row[0..n) sorted in (values, indices), using them as the buffer.
template <class T>
void topk_row_insertion(const T* row, int64_t n, int64_t k, T* values, int32_t* indices) {
  int64_t count = 0;
  for (int64_t j = 0; j < n; ++j) {
    const T x = row[j];
    if (count == k && !ranks_before(x, j, values[k - 1], indices[k - 1])) continue;
    int64_t pos = count < k ? count++ : k - 1;  // a full buffer drops its last entry
    while (pos > 0 && ranks_before(x, j, values[pos - 1], indices[pos - 1])) {
      values[pos] = values[pos - 1];
      indices[pos] = indices[pos - 1];
      --pos;
    }
    values[pos] = x;
    indices[pos] = static_cast<int32_t>(j);
  }
}

template <class T>
void topk_row_partial_sort(const T* row, int64_t n, int64_t k, std::vector<int32_t>& order, T* values,
                           int32_t* indices) {
  order.resize(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [row](int32_t a, int32_t b) { return ranks_before(row[a], a, row[b], b); });
  for (int64_t j = 0; j < k; ++j) {
    indices[j] = order[j];
    values[j] = row[order[j]];
  }
}

}  // namespace

void topk_forward(const Tensor& x, int64_t k, Tensor& values, Tensor& indices) {
  const int64_t n = x.size(-1);
  const int64_t rows = x.numel() / n;
  DISPATCH_FLOAT(x.dtype(), "topk", {
    const scalar_t* px = x.data<scalar_t>();
    scalar_t* pv = values.data<scalar_t>();
    int32_t* pi = indices.data<int32_t>();
    parallel_for(rows, std::max<int64_t>(1, 8192 / n), [&](int64_t row_begin, int64_t row_end) {
      std::vector<int32_t> order;  // reused by every row of the chunk
      for (int64_t r = row_begin; r < row_end; ++r) {
        if (k <= kInsertionMaxK)
          topk_row_insertion(px + r * n, n, k, pv + r * k, pi + r * k);
        else
          topk_row_partial_sort(px + r * n, n, k, order, pv + r * k, pi + r * k);
      }
    });
  });
}

void topk_backward(const Tensor& indices, const Tensor& dvalues, Tensor& dx) {
  const int64_t k = indices.size(-1), n = dx.size(-1);
  const int64_t rows = k ? indices.numel() / k : 0;
  const int32_t* pi = indices.data<int32_t>();
  DISPATCH_FLOAT(dvalues.dtype(), "topk_backward", {
    const scalar_t* pdv = dvalues.data<scalar_t>();
    scalar_t* pdx = dx.data<scalar_t>();
    parallel_for(rows, std::max<int64_t>(1, 8192 / k), [&](int64_t row_begin, int64_t row_end) {
      for (int64_t r = row_begin; r < row_end; ++r)
        for (int64_t j = 0; j < k; ++j) pdx[r * n + pi[r * k + j]] = pdv[r * k + j];
    });
  });
}

}  // namespace cpu
}  // namespace engine
