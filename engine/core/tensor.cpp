// Tensor's storage, views and autodiff hooks. The members that are ops (full, contiguous, to,
// reshape, clone) are defined beside those ops in engine/ops: engine/core includes no op.
#include "engine/core/tensor.h"

#include <cstring>
#include <sstream>
#include <stdexcept>

#include "engine/core/allocator.h"
#include "engine/core/dispatch.h"
#include "engine/core/tape.h"

namespace engine {

void fail(const char* op, const std::string& message) { throw std::invalid_argument(std::string(op) + ": " + message); }

void throw_dtype_mismatch(const TensorImpl* impl, DType wanted) {
  throw std::invalid_argument(std::string("Tensor::data: element type mismatch: tensor is ") +
                              (impl ? dtype_name(impl->dtype) : "undefined") + ", asked for " + dtype_name(wanted));
}

std::string shape_str(const Shape& shape) {
  std::ostringstream s;
  s << "(";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << ")";
  return s.str();
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

int normalize_axis(int axis, int ndim, const char* op) {
  const int a = axis < 0 ? axis + ndim : axis;
  ENGINE_CHECK(a >= 0 && a < ndim, op,
               "axis " + std::to_string(axis) + " out of range for " + std::to_string(ndim) + " dims");
  return a;
}

Storage::Storage(size_t nbytes, Device dev) : device(dev) { data = allocator_for(dev).allocate(nbytes, &bytes); }
Storage::~Storage() { allocator_for(device).deallocate(data, bytes); }

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) ENGINE_CHECK(d >= 0, "Tensor::empty", "negative dimension in shape " + shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }

namespace {
template <class T>
Tensor from_host(const std::vector<T>& values, const Shape& shape, Device device) {
  ENGINE_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "Tensor::from_vector",
               std::to_string(values.size()) + " values do not fill shape " + shape_str(shape));
  Tensor host = Tensor::empty(shape, dtype_of<T>::value, Device::cpu());
  if (!values.empty()) std::memcpy(host.raw_data(), values.data(), values.size() * sizeof(T));
  return device.is_cpu() ? host : host.to(device);
}
}  // namespace

Tensor Tensor::from_vector(const std::vector<float>& v, const Shape& s, Device d) { return from_host(v, s, d); }
Tensor Tensor::from_vector(const std::vector<double>& v, const Shape& s, Device d) { return from_host(v, s, d); }
Tensor Tensor::from_vector(const std::vector<int32_t>& v, const Shape& s, Device d) { return from_host(v, s, d); }

int64_t Tensor::size(int axis) const { return impl_->shape[normalize_axis(axis, ndim(), "Tensor::size")]; }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t i = impl_->shape.size(); i-- > 0;) {
    if (impl_->shape[i] != 1 && impl_->strides[i] != expected) return false;
    expected *= impl_->shape[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  return static_cast<char*>(impl_->storage->data) + impl_->offset * static_cast<int64_t>(dtype_size(impl_->dtype));
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>(*impl_);
  impl->grad_slot = nullptr;
  impl->is_leaf = true;
  return Tensor(std::move(impl));
}

Tensor& Tensor::set_requires_grad(bool on) {
  ENGINE_CHECK(impl_ && impl_->is_leaf, "Tensor::set_requires_grad",
               "only leaf tensors (parameters, inputs) can be marked");
  if (on && !impl_->grad_slot) impl_->grad_slot = std::make_shared<GradSlot>(impl_->dtype);
  if (!on) impl_->grad_slot = nullptr;
  return *this;
}

Tensor Tensor::grad() const { return impl_ && impl_->grad_slot ? impl_->grad_slot->grad : Tensor(); }

void Tensor::set_grad(const Tensor& g) {
  ENGINE_CHECK(requires_grad(), "Tensor::set_grad", "tensor does not require a gradient");
  ENGINE_CHECK(!g.defined() || g.shape() == shape(), "Tensor::set_grad",
               "gradient shape " + shape_str(g.shape()) + " differs from tensor shape " + shape_str(shape()));
  impl_->grad_slot->grad = g;
  impl_->grad_slot->windows.reset();
}

void Tensor::zero_grad() {
  if (impl_ && impl_->grad_slot) impl_->grad_slot->grad = Tensor();
}

namespace {
template <class Out>
std::vector<Out> read_back(const Tensor& t) {
  Tensor host = t.device().is_cpu() ? t.contiguous() : t.contiguous().detach().to(Device::cpu());
  std::vector<Out> out(static_cast<size_t>(host.numel()));
  DISPATCH_ALL(host.dtype(), "Tensor::to_vector", {
    const scalar_t* p = host.data<scalar_t>();
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<Out>(p[i]);
  });
  return out;
}
}  // namespace

std::vector<double> Tensor::to_vector() const {
  NoGradScope no_grad;
  return read_back<double>(*this);
}
std::vector<float> Tensor::to_float_vector() const {
  NoGradScope no_grad;
  return read_back<float>(*this);
}
std::vector<int32_t> Tensor::to_int_vector() const {
  NoGradScope no_grad;
  return read_back<int32_t>(*this);
}

double Tensor::item() const {
  ENGINE_CHECK(numel() == 1, "Tensor::item", "tensor of shape " + shape_str(shape()) + " has more than one element");
  return to_vector()[0];
}

std::string Tensor::str() const {
  if (!impl_) return "Tensor[undefined]";
  return std::string("Tensor[") + dtype_name(dtype()) + ", " + device().str() + ", " + shape_str(shape()) + "]";
}

Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

}  // namespace engine
