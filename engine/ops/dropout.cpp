#include "engine/ops/dropout.h"

#include "engine/core/dispatch.h"
#include "engine/core/parallel.h"
#include "engine/core/tape.h"
#include "engine/ops/copy.h"

namespace engine {

Tensor dropout(const Tensor& x_in, double p, Generator& gen, bool training) {
  ENGINE_CHECK(p >= 0.0 && p < 1.0, "dropout", "probability must be in [0, 1), got " + std::to_string(p));
  if (!training || p == 0.0) return x_in;
  Tensor x = kernel_input(x_in);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  const uint64_t seed = gen.seed(), offset = gen.reserve(static_cast<uint64_t>(x.numel()));
  ON_DEVICE(x, dropout_apply, x, p, seed, offset, y);
  if (needs_grad({x_in})) {
    // The mask is a function of (seed, offset): regenerate it instead of storing it.
    record(y, {x_in}, [p, seed, offset](const Tensor& dy, GradSink& g) {
      Tensor dx = Tensor::empty(dy.shape(), dy.dtype(), dy.device());
      ON_DEVICE(dy, dropout_apply, dy, p, seed, offset, dx);
      g.add(0, dx);
    });
  }
  return y;
}

namespace cpu {

void dropout_apply(const Tensor& x, double p, uint64_t seed, uint64_t offset, Tensor& y) {
  DISPATCH_FLOAT_BF16(x.dtype(), "dropout", {
    using acc = acc_t<scalar_t>;
    const scalar_t* px = x.data<scalar_t>();
    scalar_t* py = y.data<scalar_t>();
    const acc keep_scale = static_cast<acc>(1.0 / (1.0 - p));
    const float threshold = static_cast<float>(p);
    parallel_for(x.numel(), 4096, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        py[i] = uniform_at(seed, offset, i) > threshold ? static_cast<acc>(px[i]) * keep_scale : acc(0);
    });
  });
}

}  // namespace cpu
}  // namespace engine
