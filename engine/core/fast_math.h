// exp and tanh for the shared formulas. On the GPU they are the CUDA library's; on the CPU,
// float exp is a Cody-Waite range reduction plus a degree-6 polynomial (max relative error
// ~7e-8, about 1 ulp) written in plain arithmetic so loops over it vectorize, where libm's
// expf is a scalar call. double keeps libm: f64 is the reference path of the gradient checks.
//
// Edges are exact: exp(x) = 0 below -86.6 (results there are < 3e-38, denormal range),
// +inf above 88.72 (float overflow), NaN in, NaN out.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "engine/core/hostdevice.h"

namespace engine {

#if !defined(__CUDA_ARCH__)
namespace fast_math_detail {
ENGINE_HD float bits_to_float(int32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}
ENGINE_HD int32_t float_to_bits(float f) {
  int32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}
}  // namespace fast_math_detail
#endif

ENGINE_HD float engine_exp(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);
#else
  using namespace fast_math_detail;
  const float hi = 88.7228391f, lo = -86.6f;
  float c = x < lo ? lo : x;
  c = c > hi ? hi : c;
  // Adding 1.5 * 2^23 rounds to the nearest integer, which lands in the low mantissa bits.
  const float shifter = 12582912.0f;
  const float t = c * 1.44269504088896341f + shifter;
  const int32_t n = float_to_bits(t) - float_to_bits(shifter);
  const float fn = t - shifter;
  const float r = c - fn * 0.693359375f + fn * 2.12194440e-4f;  // c - n ln2, ln2 split in two
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^n built in two halves: n reaches 128, one past the largest float exponent.
  // Unsigned shift: for a NaN input n is garbage (the result is replaced below), and a
  // signed shift of garbage is undefined.
  float out = p * bits_to_float(static_cast<int32_t>(static_cast<uint32_t>(n + 126) << 23)) * 2.0f;
  out = x < lo ? 0.0f : out;
  out = x > hi ? HUGE_VALF : out;
  return x != x ? x : out;
#endif
}

ENGINE_HD double engine_exp(double x) { return std::exp(x); }

// tanh(x) = 1 - 2 / (exp(2x) + 1): saturates cleanly to +-1; absolute error ~1e-7 near 0.
ENGINE_HD float engine_tanh(float x) {
#if defined(__CUDA_ARCH__)
  return tanhf(x);
#else
  return 1.0f - 2.0f / (engine_exp(2.0f * x) + 1.0f);
#endif
}

ENGINE_HD double engine_tanh(double x) { return std::tanh(x); }

}  // namespace engine
