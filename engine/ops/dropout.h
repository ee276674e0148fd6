// Dropout with a seeded counter-based generator: element i is kept when
// uniform_at(seed, offset, i) > p and then scaled by 1/(1-p). The mask is never stored;
// backward regenerates it from (seed, offset), and CPU and CUDA drop the same elements.
#pragma once
#include "engine/core/random.h"
#include "engine/core/tensor.h"

namespace engine {

// Identity when !training or p == 0. p in [0, 1).
Tensor dropout(const Tensor& x, double p, Generator& gen, bool training = true);

namespace cpu {
// y = x * mask / (1 - p); also used for the backward (x := dy).
void dropout_apply(const Tensor& x, double p, uint64_t seed, uint64_t offset, Tensor& y);
}  // namespace cpu
namespace cuda {
void dropout_apply(const Tensor& x, double p, uint64_t seed, uint64_t offset, Tensor& y);
}  // namespace cuda

}  // namespace engine
