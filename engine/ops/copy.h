// Copies, casts, fills and device transfers.
//
// contiguous(), to_device() and cast() are differentiable (the gradient is copied, moved or cast
// back). The kernels below also serve every other op: strided_copy materializes views,
// fill initializes buffers.
#pragma once
#include "engine/core/tensor.h"

namespace engine {

Tensor contiguous(const Tensor& x);
Tensor to_device(const Tensor& x, Device device);
Tensor cast(const Tensor& x, DType dtype);

// What a kernel reads: x itself when contiguous, else a dense copy; never recorded on the tape
// (the op that calls it records its own entry against the original input).
Tensor kernel_input(const Tensor& x);
// The same in `dtype` (a dense converted copy when the type differs): an f32 weight read by a
// bf16 product. Never recorded either.
Tensor kernel_input(const Tensor& x, DType dtype);

// Writes src into dst (same shape and dtype, same device; either may be a strided view).
void copy_into(const Tensor& src, Tensor& dst);

namespace cpu {
void fill(Tensor& out, double value);
void strided_copy(const Tensor& src, Tensor& dst);
void cast(const Tensor& src, Tensor& dst);  // both contiguous, same numel
}  // namespace cpu

namespace cuda {
void fill(Tensor& out, double value);
void strided_copy(const Tensor& src, Tensor& dst);
void cast(const Tensor& src, Tensor& dst);
// Contiguous bytes between any two devices (host<->device, device<->device).
void copy_bytes(const Tensor& src, Tensor& dst);
}  // namespace cuda

}  // namespace engine
