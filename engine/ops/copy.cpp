#include "engine/ops/copy.h"

#include <cstring>

#include "engine/core/dispatch.h"
#include "engine/core/parallel.h"
#include "engine/core/tape.h"

namespace engine {

// ---- differentiable ops -------------------------------------------------------------------

Tensor contiguous(const Tensor& x) {
  if (x.is_contiguous()) return x;
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  ON_DEVICE(x, strided_copy, x, y);
  if (needs_grad({x})) record(y, {x}, [](const Tensor& dy, GradSink& g) { g.add(0, dy); });
  return y;
}

Tensor kernel_input(const Tensor& x) {
  if (x.is_contiguous()) return x.detach();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  ON_DEVICE(x, strided_copy, x, y);
  return y;
}

Tensor kernel_input(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return kernel_input(x);
  Tensor src = kernel_input(x);
  Tensor y = Tensor::empty(x.shape(), dtype, x.device());
  ON_DEVICE(x, cast, src, y);
  return y;
}

Tensor to_device(const Tensor& x, Device device) {
  if (x.device() == device) return x;
  Tensor src = kernel_input(x);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), device);
#ifdef ENGINE_WITH_CUDA
  cuda::copy_bytes(src, y);
#else
  throw_no_cuda_backend();
#endif
  if (needs_grad({x})) {
    const Device from = x.device();
    record(y, {x}, [from](const Tensor& dy, GradSink& g) { g.add(0, to_device(dy, from)); });
  }
  return y;
}

Tensor cast(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  Tensor y = kernel_input(x, dtype);
  if (needs_grad({x}) && is_floating(dtype)) {
    const DType from = x.dtype();
    record(y, {x}, [from](const Tensor& dy, GradSink& g) { g.add(0, cast(dy, from)); });
  }
  return y;
}

void copy_into(const Tensor& src, Tensor& dst) {
  ENGINE_CHECK(src.shape() == dst.shape(), "copy_into",
               "shapes differ: " + shape_str(src.shape()) + " vs " + shape_str(dst.shape()));
  ENGINE_CHECK(src.dtype() == dst.dtype(), "copy_into", "element types differ");
  if (src.device() != dst.device()) {
    Tensor moved = to_device(src.detach(), dst.device());
    ON_DEVICE(dst, strided_copy, moved, dst);
    return;
  }
  ON_DEVICE(dst, strided_copy, src, dst);
}

// ---- Tensor's members that are these ops (declared in tensor.h) ----------------------------

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  ON_DEVICE(t, fill, t, value);
  return t;
}

Tensor Tensor::contiguous() const { return engine::contiguous(*this); }
Tensor Tensor::to(Device device) const { return engine::to_device(*this, device); }
Tensor Tensor::to(DType dtype) const { return engine::cast(*this, dtype); }

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  copy_into(*this, out);
  return out;
}

// ---- CPU kernels --------------------------------------------------------------------------

namespace cpu {

void fill(Tensor& out, double value) {
  const int64_t n = out.numel();
  DISPATCH_ALL(out.dtype(), "fill", {
    scalar_t* p = out.data<scalar_t>();
    const scalar_t v = static_cast<scalar_t>(value);
    parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) { std::fill(p + b, p + e, v); });
  });
}

void strided_copy(const Tensor& src, Tensor& dst) {
  const int64_t n = src.numel();
  if (n == 0) return;
  const size_t esize = dtype_size(src.dtype());
  if (src.is_contiguous() && dst.is_contiguous()) {
    char* d = static_cast<char*>(dst.raw_data());
    const char* s = static_cast<const char*>(src.raw_data());
    parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) { std::memcpy(d + b * esize, s + b * esize, (e - b) * esize); });
    return;
  }
  const int nd = src.ndim();
  const Shape& shape = src.shape();
  const int64_t inner = nd ? shape[nd - 1] : 1;
  const int64_t rows = n / inner;
  const int64_t s_inner = nd ? src.strides()[nd - 1] : 1, d_inner = nd ? dst.strides()[nd - 1] : 1;
  DISPATCH_ALL(src.dtype(), "strided_copy", {
    const scalar_t* s = src.data<scalar_t>();
    scalar_t* d = dst.data<scalar_t>();
    parallel_for(rows, 64, [&](int64_t rb, int64_t re) {
      for (int64_t r = rb; r < re; ++r) {
        int64_t so = 0, dof = 0, rem = r;
        for (int ax = nd - 2; ax >= 0; --ax) {
          const int64_t idx = rem % shape[ax];
          rem /= shape[ax];
          so += idx * src.strides()[ax];
          dof += idx * dst.strides()[ax];
        }
        if (s_inner == 1 && d_inner == 1)
          std::memcpy(d + dof, s + so, static_cast<size_t>(inner) * sizeof(scalar_t));
        else
          for (int64_t j = 0; j < inner; ++j) d[dof + j * d_inner] = s[so + j * s_inner];
      }
    });
  });
}

namespace {
// The conversions bf16 training runs on every step, written so they vectorize.
ENGINE_SIMD_CLONES void f32_to_bf16_span(const float* __restrict s, bf16* __restrict d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i].bits = float_to_bf16_bits(s[i]);
}
ENGINE_SIMD_CLONES void bf16_to_f32_span(const bf16* __restrict s, float* __restrict d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = bf16_bits_to_float(s[i].bits);
}
}  // namespace

void cast(const Tensor& src, Tensor& dst) {
  const int64_t n = src.numel();
  if (src.dtype() == DType::f32 && dst.dtype() == DType::bf16) {
    const float* s = src.data<float>();
    bf16* d = dst.data<bf16>();
    parallel_for(n, 1 << 15, [&](int64_t b, int64_t e) { f32_to_bf16_span(s + b, d + b, e - b); });
    return;
  }
  if (src.dtype() == DType::bf16 && dst.dtype() == DType::f32) {
    const bf16* s = src.data<bf16>();
    float* d = dst.data<float>();
    parallel_for(n, 1 << 15, [&](int64_t b, int64_t e) { bf16_to_f32_span(s + b, d + b, e - b); });
    return;
  }
  DISPATCH_ALL(src.dtype(), "cast", {
    using in_t = scalar_t;
    const in_t* s = src.data<in_t>();
    DISPATCH_ALL(dst.dtype(), "cast", {
      scalar_t* d = dst.data<scalar_t>();
      parallel_for(n, 1 << 15, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) d[i] = static_cast<scalar_t>(s[i]);
      });
    });
  });
}

}  // namespace cpu
}  // namespace engine
