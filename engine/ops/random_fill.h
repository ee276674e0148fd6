// Random tensors from a Generator: normal and uniform. Element i of a draw is a pure function
// of (seed, offset + i) (engine/core/random.h), identical on CPU and CUDA.
#pragma once
#include "engine/core/random.h"
#include "engine/core/tensor.h"

namespace engine {

Tensor randn(const Shape& shape, Generator& gen, double mean = 0.0, double std = 1.0, DType dtype = DType::f32,
             Device device = Device::cpu());
Tensor rand_uniform(const Shape& shape, Generator& gen, double low = 0.0, double high = 1.0, DType dtype = DType::f32,
                    Device device = Device::cpu());

namespace cpu {
void normal_fill(Tensor& out, uint64_t seed, uint64_t offset, double mean, double std);
void uniform_fill(Tensor& out, uint64_t seed, uint64_t offset, double low, double high);
}  // namespace cpu
namespace cuda {
void normal_fill(Tensor& out, uint64_t seed, uint64_t offset, double mean, double std);
void uniform_fill(Tensor& out, uint64_t seed, uint64_t offset, double low, double high);
}  // namespace cuda

}  // namespace engine
