// bfloat16: the storage type of activations and their gradients under `precision: bf16`.
//
// A bf16 is the top half of an f32 (sign, 8-bit exponent, 7 stored mantissa bits): same range
// as f32, relative precision 2^-8 (0.39%). It is a storage format only. Kernels load a bf16 as
// float, compute and accumulate in float (acc_t<T>), and round once when they store:
//   y[i] = activation(acc_t<T>(x[i]));     // not activation(x[i]): that would compute in bf16
// Rounding is to nearest even, as oneDNN and CUDA round; a NaN stays a NaN (its quiet bit is set
// so the rounding carry cannot turn it into an infinity). The same code runs on the host (where
// the plain integer form vectorizes) and in CUDA kernels.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "engine/core/hostdevice.h"

namespace engine {

ENGINE_HD uint16_t float_to_bf16_bits(float f) {
#if defined(__CUDA_ARCH__)
  const uint32_t u = __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
#endif
  const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return static_cast<uint16_t>(nan ? (u >> 16) | 0x40u : rounded);
}

ENGINE_HD float bf16_bits_to_float(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

struct bf16 {
  uint16_t bits;
  bf16() = default;
  template <class U, class = std::enable_if_t<std::is_arithmetic<U>::value>>
  ENGINE_HD bf16(U value) : bits(float_to_bf16_bits(static_cast<float>(value))) {}  // NOLINT: implicit by design
  ENGINE_HD operator float() const { return bf16_bits_to_float(bits); }             // NOLINT
};
static_assert(sizeof(bf16) == 2, "bf16 must be two bytes");

// What a kernel computes and accumulates in for storage type T: float for bf16, T otherwise.
template <class T>
struct accumulate_type {
  using type = T;
};
template <>
struct accumulate_type<bf16> {
  using type = float;
};
template <class T>
using acc_t = typename accumulate_type<T>::type;

}  // namespace engine
