// Element types. f32 is the training type and the type of every parameter, gradient of a
// parameter and optimizer state; bf16 stores activations and their gradients under
// `precision: bf16` (engine/core/bf16.h: kernels compute in f32 from it); f64 exists on every
// device so that finite-difference gradient checks are decisive; i32 holds token ids and expert
// indices.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "engine/core/bf16.h"

namespace engine {

enum class DType : uint8_t { f32, f64, i32, bf16 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32:
      return 4;
    case DType::f64:
      return 8;
    case DType::i32:
      return 4;
    case DType::bf16:
      return 2;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "f32";
    case DType::f64:
      return "f64";
    case DType::i32:
      return "i32";
    case DType::bf16:
      return "bf16";
  }
  return "?";
}

inline bool is_floating(DType t) { return t == DType::f32 || t == DType::f64 || t == DType::bf16; }

// The type a bf16 tensor's kernels compute in, and that the gradients of f32 parameters stay in.
inline DType compute_dtype(DType t) { return t == DType::bf16 ? DType::f32 : t; }

template <class T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr DType value = DType::f32;
};
template <>
struct dtype_of<double> {
  static constexpr DType value = DType::f64;
};
template <>
struct dtype_of<bf16> {
  static constexpr DType value = DType::bf16;
};
template <>
struct dtype_of<int32_t> {
  static constexpr DType value = DType::i32;
};

}  // namespace engine
