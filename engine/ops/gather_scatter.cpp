#include "engine/ops/gather_scatter.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "engine/core/dispatch.h"
#include "engine/core/parallel.h"
#include "engine/core/tape.h"
#include "engine/ops/copy.h"
#include "engine/ops/shape.h"

namespace engine {

namespace {

void check_index_vector(const Tensor& index, const Tensor& data, const char* op) {
  ENGINE_CHECK(index.defined() && index.dtype() == DType::i32 && index.ndim() == 1, op,
               "index must be a 1-D i32 tensor, got " + index.str());
  ENGINE_CHECK(index.device() == data.device(), op,
               "index lives on " + index.device().str() + ", the data on " + data.device().str());
}

// CPU only (reads host memory). Runs serially before any parallel loop: an exception must not
// leave an OpenMP region.
void check_row_indices(const Tensor& index, int64_t num_rows, const char* op, const char* what) {
  const int32_t* p = index.data<int32_t>();
  const int64_t n = index.numel();
  for (int64_t i = 0; i < n; ++i) {
    if (p[i] < 0 || p[i] >= num_rows)
      throw std::invalid_argument(std::string(op) + ": " + what + " " + std::to_string(p[i]) + " at position " +
                                  std::to_string(i) + " is out of range [0, " + std::to_string(num_rows) + ")");
  }
}

// dsrc[i] = weight[i] * dout[index[i]]: the gradient of a weighted scatter's rows (MoE combine
// backward), one pass instead of a gather and a scaling.
Tensor gather_scaled(const Tensor& dout, const Tensor& index, const Tensor& weight) {
  Tensor out = Tensor::empty({index.numel(), dout.size(1)}, dout.dtype(), dout.device());
  ON_DEVICE(dout, gather_rows_scaled, dout, index, weight, out);
  return out;
}
}  // namespace

Tensor gather_rows(const Tensor& x_in, const Tensor& index_in) {
  const char* op = "gather_rows";
  ENGINE_CHECK(x_in.defined() && x_in.ndim() == 2, op, "x must be [N, d], got " + x_in.str());
  check_index_vector(index_in, x_in, op);
  Tensor x = kernel_input(x_in), index = kernel_input(index_in);
  const int64_t num_rows = x.size(0);
  Tensor out = Tensor::empty({index.numel(), x.size(1)}, x.dtype(), x.device());
  ON_DEVICE(x, gather_rows, x, index, out);
  if (is_floating(x_in.dtype()) && needs_grad({x_in})) {
    record(out, {x_in},
           [index, num_rows](const Tensor& dout, GradSink& g) { g.add(0, scatter_add_rows(dout, index, num_rows)); });
  }
  return out;
}

Tensor scatter_add_rows(const Tensor& src_in, const Tensor& index_in, int64_t num_rows, const Tensor& weight_in) {
  const char* op = "scatter_add_rows";
  ENGINE_CHECK(src_in.defined() && src_in.ndim() == 2 && is_floating(src_in.dtype()), op,
               "src must be a floating-point [M, d] tensor, got " + src_in.str());
  check_index_vector(index_in, src_in, op);
  const int64_t m = src_in.size(0);
  ENGINE_CHECK(index_in.numel() == m, op,
               "index has " + std::to_string(index_in.numel()) + " entries, src has " + std::to_string(m) + " rows");
  ENGINE_CHECK(num_rows >= 0, op, "num_rows must be >= 0, got " + std::to_string(num_rows));
  if (weight_in.defined()) {
    ENGINE_CHECK(weight_in.ndim() == 1 && weight_in.numel() == m, op,
                 "weight must be [" + std::to_string(m) + "] (one per src row), got " + weight_in.str());
    // Gates stay f32 when the rows are bf16 (they come from the router, which computes in f32).
    ENGINE_CHECK(weight_in.dtype() == compute_dtype(src_in.dtype()) && weight_in.device() == src_in.device(), op,
                 "weight " + weight_in.str() + " must be " + dtype_name(compute_dtype(src_in.dtype())) +
                     " on src's device for src " + src_in.str());
  }
  Tensor src = kernel_input(src_in), index = kernel_input(index_in);
  Tensor weight = weight_in.defined() ? kernel_input(weight_in) : Tensor();
  Tensor out = Tensor::zeros({num_rows, src.size(1)}, src.dtype(), src.device());
  ON_DEVICE(src, scatter_add_rows, src, index, weight, out);
  if (needs_grad({src_in, weight_in})) {
    // Keep only what the gradients read: src for the weight's, weight for src's.
    Tensor keep_src = weight_in.defined() && weight_in.requires_grad() ? src : Tensor();
    Tensor keep_weight = src_in.requires_grad() ? weight : Tensor();
    record(out, {src_in, weight_in}, [index, keep_weight, keep_src](const Tensor& dout_in, GradSink& g) {
      Tensor dout = kernel_input(dout_in);
      if (g.wants(0)) g.add(0, keep_weight.defined() ? gather_scaled(dout, index, keep_weight) : gather_rows(dout, index));
      if (g.wants(1)) {
        Tensor dweight = Tensor::empty({index.numel()}, compute_dtype(dout.dtype()), dout.device());
        ON_DEVICE(dout, rows_dot, dout, index, keep_src, dweight);
        g.add(1, dweight);
      }
    });
  }
  return out;
}

Tensor embedding(const Tensor& table, const Tensor& ids) {
  const char* op = "embedding";
  ENGINE_CHECK(table.defined() && table.ndim() == 2, op, "table must be [V, d], got " + table.str());
  ENGINE_CHECK(ids.defined() && ids.dtype() == DType::i32, op, "ids must be an i32 tensor, got " + ids.str());
  ENGINE_CHECK(ids.device() == table.device(), op,
               "ids live on " + ids.device().str() + ", the table on " + table.device().str());
  Tensor flat_ids = kernel_input(ids).reshape({ids.numel()});
  // gather_rows checks too, but this names the op the caller used and the flat id position.
  if (flat_ids.device().is_cpu()) check_row_indices(flat_ids, table.size(0), op, "id");
  Shape out_shape = ids.shape();
  out_shape.push_back(table.size(1));
  return reshape(gather_rows(table, flat_ids), out_shape);
}

namespace cpu {

void gather_rows(const Tensor& x, const Tensor& index, Tensor& out) {
  check_row_indices(index, x.size(0), "gather_rows", "index");
  const int64_t m = index.numel(), d = x.size(1);
  const int32_t* pi = index.data<int32_t>();
  DISPATCH_ALL(x.dtype(), "gather_rows", {
    const scalar_t* px = x.data<scalar_t>();
    scalar_t* po = out.data<scalar_t>();
    parallel_for(m, std::max<int64_t>(1, 16384 / std::max<int64_t>(d, 1)), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        std::memcpy(po + i * d, px + static_cast<int64_t>(pi[i]) * d, static_cast<size_t>(d) * sizeof(scalar_t));
    });
  });
}

namespace {
template <class T>
ENGINE_SIMD_CLONES void scaled_copy_span(acc_t<T> w, const T* __restrict x, T* __restrict y, int64_t n) {
  for (int64_t c = 0; c < n; ++c) y[c] = w * static_cast<acc_t<T>>(x[c]);
}
}  // namespace

void gather_rows_scaled(const Tensor& x, const Tensor& index, const Tensor& weight, Tensor& out) {
  check_row_indices(index, x.size(0), "gather_rows", "index");
  const int64_t m = index.numel(), d = x.size(1);
  const int32_t* pi = index.data<int32_t>();
  DISPATCH_FLOAT_BF16(x.dtype(), "gather_rows_scaled", {
    const scalar_t* px = x.data<scalar_t>();
    const acc_t<scalar_t>* pw = weight.data<acc_t<scalar_t>>();
    scalar_t* po = out.data<scalar_t>();
    parallel_for(m, std::max<int64_t>(1, 16384 / std::max<int64_t>(d, 1)), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) scaled_copy_span(pw[i], px + static_cast<int64_t>(pi[i]) * d, po + i * d, d);
    });
  });
}

namespace {

// The loops live in templates rather than inside DISPATCH_FLOAT: a #pragma cannot appear in a
// macro argument.
template <class T>
ENGINE_SIMD_CLONES void axpy_span(acc_t<T> w, const T* __restrict x, acc_t<T>* __restrict y, int64_t n) {
  for (int64_t c = 0; c < n; ++c) y[c] += w * static_cast<acc_t<T>>(x[c]);
}

template <class T>
ENGINE_SIMD_CLONES double dot_span(const T* __restrict a, const T* __restrict b, int64_t n) {
  double acc = 0.0;  // rows are long (the model width): accumulate in double, as reduce does
#pragma omp simd reduction(+ : acc)
  for (int64_t c = 0; c < n; ++c) acc += static_cast<double>(a[c]) * static_cast<double>(b[c]);
  return acc;
}

// out is in acc_t<T>: bf16 rows (a token's k expert outputs) are summed in f32.
template <class T>
void scatter_add_rows_loop(const T* src, const int32_t* index, const acc_t<T>* weight, int64_t m, int64_t d,
                           acc_t<T>* out) {
  // Repeated indices make rows collide, so threads split the columns instead of the rows:
  // each output element is owned by one thread and summed in index order, whatever the
  // thread count (deterministic, race-free).
  parallel_for(d, std::max<int64_t>(16, 16384 / std::max<int64_t>(m, 1)), [&](int64_t col_begin, int64_t col_end) {
    for (int64_t i = 0; i < m; ++i) {
      axpy_span(weight ? weight[i] : acc_t<T>(1), src + i * d + col_begin,
                out + static_cast<int64_t>(index[i]) * d + col_begin, col_end - col_begin);
    }
  });
}

template <class T>
void rows_dot_loop(const T* dout, const int32_t* index, const T* src, int64_t m, int64_t d, acc_t<T>* dweight) {
  parallel_for(m, std::max<int64_t>(1, 8192 / std::max<int64_t>(d, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      dweight[i] = static_cast<acc_t<T>>(dot_span(dout + static_cast<int64_t>(index[i]) * d, src + i * d, d));
    }
  });
}

}  // namespace

void scatter_add_rows(const Tensor& src, const Tensor& index, const Tensor& weight, Tensor& out) {
  check_row_indices(index, out.size(0), "scatter_add_rows", "index");
  const int64_t m = index.numel(), d = out.size(1);
  // bf16 rows are summed into an f32 buffer, then rounded once.
  Tensor sums = out.dtype() == DType::bf16 ? Tensor::zeros(out.shape(), DType::f32, out.device()) : out;
  DISPATCH_FLOAT_BF16(src.dtype(), "scatter_add_rows", {
    using acc = acc_t<scalar_t>;
    scatter_add_rows_loop(src.data<scalar_t>(), index.data<int32_t>(), weight.defined() ? weight.data<acc>() : nullptr,
                          m, d, sums.data<acc>());
  });
  if (!sums.same_storage(out)) cast(sums, out);
}

void rows_dot(const Tensor& dout, const Tensor& index, const Tensor& src, Tensor& dweight) {
  check_row_indices(index, dout.size(0), "rows_dot", "index");
  const int64_t m = index.numel(), d = src.size(1);
  DISPATCH_FLOAT_BF16(src.dtype(), "rows_dot", {
    rows_dot_loop(dout.data<scalar_t>(), index.data<int32_t>(), src.data<scalar_t>(), m, d,
                  dweight.data<acc_t<scalar_t>>());
  });
}

}  // namespace cpu
}  // namespace engine
