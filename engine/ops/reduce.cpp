#include "engine/ops/reduce.h"

#include <vector>

#include "engine/core/dispatch.h"
#include "engine/core/parallel.h"
#include "engine/core/tape.h"
#include "engine/ops/binary.h"
#include "engine/ops/copy.h"
#include "engine/ops/shape.h"

namespace engine {

namespace {

Tensor reduce_axis(const Tensor& x_in, int axis_in, bool keepdim, bool average) {
  const char* name = average ? "mean" : "sum";
  ENGINE_CHECK(is_floating(x_in.dtype()), name, "needs a floating-point tensor");
  const int axis = normalize_axis(axis_in, x_in.ndim(), name);
  Tensor x = kernel_input(x_in);
  const Shape& s = x.shape();
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < axis; ++i) outer *= s[i];
  for (int i = axis + 1; i < x.ndim(); ++i) inner *= s[i];
  const int64_t n = s[axis];
  Shape out_shape = s;
  if (keepdim)
    out_shape[axis] = 1;
  else
    out_shape.erase(out_shape.begin() + axis);
  const double scale = average ? (n > 0 ? 1.0 / n : 0.0) : 1.0;
  // A bf16 sum is accumulated and returned in f32: rounding it to bf16 would throw away the
  // accuracy the accumulation kept (a bias gradient summed over thousands of rows).
  Tensor out = Tensor::empty(out_shape, compute_dtype(x.dtype()), x.device());
  ON_DEVICE(x, reduce_sum, x, outer, n, inner, scale, out);
  if (needs_grad({x_in})) {
    const Shape in_shape = s;
    record(out, {x_in}, [=](const Tensor& dy, GradSink& g) {
      Tensor dx = Tensor::empty(in_shape, dy.dtype(), dy.device());
      ON_DEVICE(dy, expand_middle, dy, outer, n, inner, scale, dx);
      g.add(0, dx);
    });
  }
  return out;
}

Tensor reduce_all(const Tensor& x, bool average) {
  Tensor flat = x.reshape({x.numel()});
  return reduce_axis(flat, 0, true, average);
}

}  // namespace

Tensor sum(const Tensor& x, int axis, bool keepdim) { return reduce_axis(x, axis, keepdim, false); }
Tensor mean(const Tensor& x, int axis, bool keepdim) { return reduce_axis(x, axis, keepdim, true); }
Tensor sum_all(const Tensor& x) { return reduce_all(x, false); }
Tensor mean_all(const Tensor& x) { return reduce_all(x, true); }

Tensor sum_squares(const Tensor& x_in) {
  ENGINE_CHECK(x_in.defined() && is_floating(x_in.dtype()), "sum_squares", "needs a floating-point tensor");
  Tensor x = kernel_input(x_in);
  Tensor out = Tensor::empty({1}, DType::f64, x.device());
  ON_DEVICE(x, sum_squares, x, out);
  if (needs_grad({x_in})) {
    record(out, {x_in}, [x](const Tensor& dy, GradSink& g) {  // d/dx = 2 x dy
      g.add(0, mul(x, cast(scale(dy, 2.0), x.dtype())));
    });
  }
  return out;
}

Tensor sum_squares_each(const std::vector<Tensor>& xs) {
  const Device device = xs.empty() ? Device::cpu() : xs[0].device();
  Tensor out = Tensor::empty({static_cast<int64_t>(xs.size())}, DType::f64, device);
  for (size_t i = 0; i < xs.size(); ++i) {
    ENGINE_CHECK(xs[i].defined() && is_floating(xs[i].dtype()), "sum_squares_each",
                 "entry " + std::to_string(i) + " is not a floating-point tensor");
    ENGINE_CHECK(xs[i].device() == device, "sum_squares_each",
                 "entry " + std::to_string(i) + " " + xs[i].str() + " is not on " + device.str());
    const Tensor x = kernel_input(xs[i]);
    Tensor slot = slice(out, 0, static_cast<int64_t>(i), static_cast<int64_t>(i) + 1);  // contiguous {1}
    ON_DEVICE(x, sum_squares, x, slot);
  }
  return out;
}

namespace cpu {

namespace {
template <class T>
ENGINE_SIMD_CLONES double sum_span(const T* __restrict x, int64_t n) {
  double acc = 0.0;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < n; ++j) acc += x[j];
  return acc;
}
// acc[c] += x[c]: one row of a column-block sum.
template <class T>
ENGINE_SIMD_CLONES void accumulate_span(const T* __restrict x, double* __restrict acc, int64_t n) {
  for (int64_t c = 0; c < n; ++c) acc[c] += x[c];
}
template <class T>
ENGINE_SIMD_CLONES void scale_span(const T* __restrict x, acc_t<T> s, T* __restrict y, int64_t n) {
  for (int64_t c = 0; c < n; ++c) y[c] = s * x[c];
}
template <class T>
ENGINE_SIMD_CLONES double sum_squares_span(const T* __restrict x, int64_t n) {
  double acc = 0.0;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < n; ++j) acc += static_cast<double>(x[j]) * static_cast<double>(x[j]);
  return acc;
}
}  // namespace

void reduce_sum(const Tensor& x, int64_t outer, int64_t n, int64_t inner, double scale, Tensor& out) {
  DISPATCH_FLOAT_BF16(x.dtype(), "sum", {
    using out_t = acc_t<scalar_t>;
    const scalar_t* px = x.data<scalar_t>();
    out_t* po = out.data<out_t>();
    if (inner == 1) {
      parallel_for(outer, std::max<int64_t>(1, 4096 / std::max<int64_t>(n, 1)), [&](int64_t b, int64_t e) {
        for (int64_t o = b; o < e; ++o) {
          po[o] = static_cast<out_t>(sum_span(px + o * n, n) * scale);
        }
      });
    } else {
      // Columns in blocks; each (outer, block) pair is summed by one thread, top to bottom.
      constexpr int64_t kBlock = 256;
      const int64_t blocks = (inner + kBlock - 1) / kBlock;
      parallel_for(outer * blocks, 1, [&](int64_t b, int64_t e) {
        double acc[kBlock];
        for (int64_t w = b; w < e; ++w) {
          const int64_t o = w / blocks, c0 = (w % blocks) * kBlock;
          const int64_t width = std::min(kBlock, inner - c0);
          for (int64_t c = 0; c < width; ++c) acc[c] = 0.0;
          const scalar_t* base = px + o * n * inner + c0;
          for (int64_t j = 0; j < n; ++j) accumulate_span(base + j * inner, acc, width);
          out_t* dst = po + o * inner + c0;
          for (int64_t c = 0; c < width; ++c) dst[c] = static_cast<out_t>(acc[c] * scale);
        }
      });
    }
  });
}

void expand_middle(const Tensor& dy, int64_t outer, int64_t n, int64_t inner, double scale, Tensor& dx) {
  DISPATCH_FLOAT_BF16(dy.dtype(), "sum_backward", {
    const scalar_t* pd = dy.data<scalar_t>();
    scalar_t* px = dx.data<scalar_t>();
    const acc_t<scalar_t> s = static_cast<acc_t<scalar_t>>(scale);
    parallel_for(outer * n, std::max<int64_t>(1, 8192 / std::max<int64_t>(inner, 1)), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) scale_span(pd + (r / n) * inner, s, px + r * inner, inner);
    });
  });
}

void sum_squares(const Tensor& x, Tensor& out) {
  constexpr int64_t kChunk = int64_t{1} << 15;
  const int64_t n = x.numel(), chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<size_t>(chunks));
  DISPATCH_FLOAT_BF16(x.dtype(), "sum_squares", {
    const scalar_t* px = x.data<scalar_t>();
    parallel_for(chunks, 1, [&](int64_t b, int64_t e) {
      for (int64_t c = b; c < e; ++c) partial[c] = sum_squares_span(px + c * kChunk, std::min(kChunk, n - c * kChunk));
    });
  });
  double total = 0.0;
  for (double p : partial) total += p;
  out.data<double>()[0] = total;
}

}  // namespace cpu
}  // namespace engine
