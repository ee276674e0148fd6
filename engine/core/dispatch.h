// Picks the backend and the element type of a kernel call.
//
// Every op's header declares its kernels twice, `cpu::name(...)` and `cuda::name(...)`, with the
// same signature; ON_DEVICE(t, name, args...) calls the one for t's device. In a build without
// CUDA the cuda:: kernels are not compiled and a CUDA tensor gets a clear error instead.
#pragma once
#include <stdexcept>
#include <string>

#include "engine/core/dtype.h"

namespace engine {

[[noreturn]] inline void throw_no_cuda_backend() {
  throw std::runtime_error("this build has no CUDA backend (configure with ENGINE_CUDA=ON and nvcc present)");
}

[[noreturn]] inline void throw_bad_dtype(const char* op, DType t) {
  throw std::invalid_argument(std::string(op) + ": unsupported element type " + dtype_name(t));
}

}  // namespace engine

#ifdef ENGINE_WITH_CUDA
#define ON_DEVICE(tensor, kernel, ...) \
  ((tensor).device().is_cuda() ? ::engine::cuda::kernel(__VA_ARGS__) : ::engine::cpu::kernel(__VA_ARGS__))
#else
#define ON_DEVICE(tensor, kernel, ...) \
  ((tensor).device().is_cuda() ? ::engine::throw_no_cuda_backend() : ::engine::cpu::kernel(__VA_ARGS__))
#endif

// One case of a dtype switch: runs the body with `scalar_t` bound to `type`.
#define ENGINE_DTYPE_CASE(dtype_value, type, ...) \
  case dtype_value: {                             \
    using scalar_t = type;                        \
    __VA_ARGS__;                                  \
    break;                                        \
  }

// Runs the body with `scalar_t` bound to float or double. (A #pragma cannot appear inside the
// body, as it is a macro argument: put such loops in a function the body calls.)
#define DISPATCH_FLOAT(dtype, op_name, ...)                      \
  switch (dtype) {                                               \
    ENGINE_DTYPE_CASE(::engine::DType::f32, float, __VA_ARGS__)  \
    ENGINE_DTYPE_CASE(::engine::DType::f64, double, __VA_ARGS__) \
    default:                                                     \
      ::engine::throw_bad_dtype(op_name, dtype);                 \
  }

// Same, with bf16 too: for kernels that load through acc_t<scalar_t> (engine/core/bf16.h), so
// that a bf16 tensor computes in float. An op whose kernels do not is left on DISPATCH_FLOAT and
// refuses bf16 by name.
#define DISPATCH_FLOAT_BF16(dtype, op_name, ...)                        \
  switch (dtype) {                                                      \
    ENGINE_DTYPE_CASE(::engine::DType::f32, float, __VA_ARGS__)         \
    ENGINE_DTYPE_CASE(::engine::DType::f64, double, __VA_ARGS__)        \
    ENGINE_DTYPE_CASE(::engine::DType::bf16, ::engine::bf16, __VA_ARGS__) \
    default:                                                            \
      ::engine::throw_bad_dtype(op_name, dtype);                        \
  }

// Every type (copies, fills, casts, gathers of rows or index tensors).
#define DISPATCH_ALL(dtype, op_name, ...)                                 \
  switch (dtype) {                                                        \
    ENGINE_DTYPE_CASE(::engine::DType::f32, float, __VA_ARGS__)           \
    ENGINE_DTYPE_CASE(::engine::DType::f64, double, __VA_ARGS__)          \
    ENGINE_DTYPE_CASE(::engine::DType::i32, int32_t, __VA_ARGS__)         \
    ENGINE_DTYPE_CASE(::engine::DType::bf16, ::engine::bf16, __VA_ARGS__) \
    default:                                                              \
      ::engine::throw_bad_dtype(op_name, dtype);                          \
  }
