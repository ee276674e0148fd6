#include "engine/ops/random_fill.h"

#include "engine/core/dispatch.h"
#include "engine/core/parallel.h"

namespace engine {

Tensor randn(const Shape& shape, Generator& gen, double mean, double std, DType dtype, Device device) {
  ENGINE_CHECK(is_floating(dtype), "randn", "needs a floating element type");
  Tensor t = Tensor::empty(shape, dtype, device);
  const uint64_t offset = gen.reserve(static_cast<uint64_t>(t.numel()), kNormalWords);
  ON_DEVICE(t, normal_fill, t, gen.seed(), offset, mean, std);
  return t;
}

Tensor rand_uniform(const Shape& shape, Generator& gen, double low, double high, DType dtype, Device device) {
  ENGINE_CHECK(is_floating(dtype), "rand_uniform", "needs a floating element type");
  Tensor t = Tensor::empty(shape, dtype, device);
  const uint64_t offset = gen.reserve(static_cast<uint64_t>(t.numel()));
  ON_DEVICE(t, uniform_fill, t, gen.seed(), offset, low, high);
  return t;
}

namespace cpu {

void normal_fill(Tensor& out, uint64_t seed, uint64_t offset, double mean, double std) {
  DISPATCH_FLOAT(out.dtype(), "randn", {
    scalar_t* p = out.data<scalar_t>();
    parallel_for(out.numel(), 4096, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) p[i] = static_cast<scalar_t>(mean + std * normal_at(seed, offset, i));
    });
  });
}

void uniform_fill(Tensor& out, uint64_t seed, uint64_t offset, double low, double high) {
  DISPATCH_FLOAT(out.dtype(), "rand_uniform", {
    scalar_t* p = out.data<scalar_t>();
    parallel_for(out.numel(), 4096, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        p[i] = static_cast<scalar_t>(low + (high - low) * static_cast<double>(uniform_at(seed, offset, i)));
    });
  });
}

}  // namespace cpu
}  // namespace engine
