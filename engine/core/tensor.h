// Tensor: a typed, strided view of device memory, plus the hook autodiff needs.
//
// Contract:
// - A tensor shares its Storage with its views (reshape of contiguous data, transpose, permute,
//   slice); ops that need dense input call contiguous(), which copies only when needed.
// - Memory comes from the device's caching allocator and returns to it when the last view dies.
// - Transfers are explicit: to(Device). Nothing moves between devices behind the user's back.
// - requires_grad tensors carry a GradSlot; the tape writes their gradient there (see tape.h).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/core/device.h"
#include "engine/core/dtype.h"

namespace engine {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& shape);
int64_t shape_numel(const Shape& shape);
Shape contiguous_strides(const Shape& shape);

struct Storage {
  void* data = nullptr;
  size_t bytes = 0;  // rounded size, as the allocator handed it out
  Device device;
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

class Tensor;
struct GradSlot;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  Shape strides;  // in elements
  DType dtype = DType::f32;
  std::shared_ptr<GradSlot> grad_slot;  // set when the tensor takes part in autodiff
  bool is_leaf = true;                  // false for tensors produced by recorded ops
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // Creation. Everything is allocated on `device`; host data is copied over.
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  // Defined in engine/ops/copy.cpp, beside the fill kernel it runs.
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape, Device device = Device::cpu());
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape, Device device = Device::cpu());
  static Tensor from_vector(const std::vector<int32_t>& values, const Shape& shape, Device device = Device::cpu());
  static Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype(), t.device()); }

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl_->shape; }
  const Shape& strides() const { return impl_->strides; }
  int ndim() const { return static_cast<int>(impl_->shape.size()); }
  int64_t size(int axis) const;  // negative axes count from the end
  int64_t numel() const { return shape_numel(impl_->shape); }
  DType dtype() const { return impl_->dtype; }
  Device device() const { return impl_->storage->device; }
  bool is_contiguous() const;
  int64_t offset() const { return impl_->offset; }
  const std::shared_ptr<Storage>& storage() const { return impl_->storage; }

  // Pointer to the first element; checks the element type.
  template <class T>
  T* data() const;
  void* raw_data() const;

  // Views and copies. All but detach() are differentiable ops, declared here for convenience and
  // defined beside those ops (engine/ops/copy.cpp, engine/ops/shape.cpp): engine/core includes
  // nothing from engine/ops.
  Tensor contiguous() const;
  Tensor to(Device device) const;
  Tensor to(DType dtype) const;
  Tensor reshape(const Shape& shape) const;
  Tensor detach() const;  // same storage, no autodiff history
  Tensor clone() const;   // deep copy, no autodiff history

  // Autodiff.
  bool requires_grad() const { return impl_ && impl_->grad_slot != nullptr; }
  Tensor& set_requires_grad(bool on);  // leaves only (parameters, inputs of a gradient check)
  bool is_leaf() const { return impl_->is_leaf; }
  Tensor grad() const;  // undefined until backward wrote one
  void set_grad(const Tensor& g);
  void zero_grad();  // drops the gradient (the next backward starts from zero)

  // Host read-back, converted to double (or float). Copies from the device when needed.
  std::vector<double> to_vector() const;
  std::vector<float> to_float_vector() const;
  std::vector<int32_t> to_int_vector() const;
  double item() const;

  std::string str() const;  // "Tensor[f32, cpu, (2, 3)]"
  TensorImpl* impl() const { return impl_.get(); }
  bool same_storage(const Tensor& other) const { return impl_->storage == other.impl_->storage; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// A view of `base`'s storage with its own shape, strides and offset.
Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset);

// Normalizes a possibly negative axis; throws naming the op when out of range.
int normalize_axis(int axis, int ndim, const char* op);

// Throws std::invalid_argument "op: message". ENGINE_CHECK builds the message only when the
// condition fails: checks sit on every op call, and string building would cost more than
// a small op.
[[noreturn]] void fail(const char* op, const std::string& message);
#define ENGINE_CHECK(cond, op, message)       \
  do {                                        \
    if (!(cond)) ::engine::fail(op, message); \
  } while (0)

[[noreturn]] void throw_dtype_mismatch(const TensorImpl* impl, DType wanted);

template <class T>
T* Tensor::data() const {
  // Hot path: no string is built unless the check fails.
  if (!impl_ || impl_->dtype != dtype_of<T>::value) throw_dtype_mismatch(impl_.get(), dtype_of<T>::value);
  return static_cast<T*>(impl_->storage->data) + impl_->offset;
}

}  // namespace engine
