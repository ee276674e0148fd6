#include "engine/ops/shape.h"

#include <numeric>

#include "engine/core/dispatch.h"
#include "engine/core/tape.h"
#include "engine/ops/copy.h"

namespace engine {

Tensor reshape(const Tensor& x_in, const Shape& requested) {
  Shape shape = requested;
  int64_t known = 1;
  int infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      ENGINE_CHECK(infer < 0, "reshape", "more than one -1 in " + shape_str(requested));
      infer = static_cast<int>(i);
    } else {
      ENGINE_CHECK(shape[i] >= 0, "reshape", "negative dimension in " + shape_str(requested));
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    ENGINE_CHECK(known > 0 && x_in.numel() % known == 0, "reshape",
                 "cannot infer -1 in " + shape_str(requested) + " from " + std::to_string(x_in.numel()) + " elements");
    shape[infer] = x_in.numel() / known;
  }
  ENGINE_CHECK(shape_numel(shape) == x_in.numel(), "reshape",
               "cannot view " + shape_str(x_in.shape()) + " as " + shape_str(requested) + ": element counts differ");
  if (shape == x_in.shape()) return x_in;
  Tensor x = x_in.contiguous();
  Tensor y = make_view(x, shape, contiguous_strides(shape), x.offset());
  if (needs_grad({x})) {
    const Shape in_shape = x.shape();
    record(y, {x}, [in_shape](const Tensor& dy, GradSink& g) { g.add(0, reshape(dy, in_shape)); });
  }
  return y;
}

Tensor Tensor::reshape(const Shape& shape) const { return engine::reshape(*this, shape); }

Tensor flatten_rows(const Tensor& x) {
  ENGINE_CHECK(x.ndim() >= 1, "flatten_rows", "needs at least one axis");
  return reshape(x, {-1, x.size(-1)});
}

Tensor permute(const Tensor& x, const std::vector<int>& order) {
  ENGINE_CHECK(static_cast<int>(order.size()) == x.ndim(), "permute",
               "order names " + std::to_string(order.size()) + " axes, tensor has " + std::to_string(x.ndim()));
  std::vector<int> seen(order.size(), 0), inverse(order.size());
  Shape shape(order.size()), strides(order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    const int a = normalize_axis(order[i], x.ndim(), "permute");
    ENGINE_CHECK(!seen[a]++, "permute", "axis " + std::to_string(a) + " appears twice");
    shape[i] = x.shape()[a];
    strides[i] = x.strides()[a];
    inverse[a] = static_cast<int>(i);
  }
  Tensor y = make_view(x, shape, strides, x.offset());
  if (needs_grad({x})) record(y, {x}, [inverse](const Tensor& dy, GradSink& g) { g.add(0, permute(dy, inverse)); });
  return y;
}

Tensor transpose(const Tensor& x, int axis0, int axis1) {
  std::vector<int> order(x.ndim());
  std::iota(order.begin(), order.end(), 0);
  std::swap(order[normalize_axis(axis0, x.ndim(), "transpose")], order[normalize_axis(axis1, x.ndim(), "transpose")]);
  return permute(x, order);
}

Tensor slice(const Tensor& x, int axis_in, int64_t start, int64_t end) {
  const int axis = normalize_axis(axis_in, x.ndim(), "slice");
  const int64_t n = x.shape()[axis];
  ENGINE_CHECK(
      0 <= start && start <= end && end <= n, "slice",
      "range [" + std::to_string(start) + ", " + std::to_string(end) + ") outside axis of size " + std::to_string(n));
  Shape shape = x.shape();
  shape[axis] = end - start;
  Tensor y = make_view(x, shape, x.strides(), x.offset() + start * x.strides()[axis]);
  if (needs_grad({x})) {
    record(y, {x}, [axis, start](const Tensor& dy, GradSink& g) { g.add_window(0, axis, start, dy); });
  }
  return y;
}

Tensor concat(const std::vector<Tensor>& parts, int axis_in) {
  ENGINE_CHECK(!parts.empty(), "concat", "no tensors given");
  const Tensor& first = parts[0];
  const int axis = normalize_axis(axis_in, first.ndim(), "concat");
  Shape shape = first.shape();
  shape[axis] = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const Tensor& p = parts[i];
    bool same = p.ndim() == first.ndim() && p.dtype() == first.dtype() && p.device() == first.device();
    for (int a = 0; same && a < p.ndim(); ++a) same = a == axis || p.shape()[a] == first.shape()[a];
    ENGINE_CHECK(same, "concat",
                 "part " + std::to_string(i) + " " + p.str() + " does not match part 0 " + first.str() +
                     " outside axis " + std::to_string(axis));
    shape[axis] += p.shape()[axis];
  }
  Tensor out = Tensor::empty(shape, first.dtype(), first.device());
  std::vector<int64_t> offsets;
  int64_t offset = 0;
  for (const Tensor& p : parts) {
    offsets.push_back(offset);
    Tensor window = slice(out, axis, offset, offset + p.shape()[axis]);
    ON_DEVICE(out, strided_copy, p, window);
    offset += p.shape()[axis];
  }
  if (needs_grad(parts)) {
    std::vector<int64_t> sizes;
    for (const Tensor& p : parts) sizes.push_back(p.shape()[axis]);
    record(out, parts, [axis, offsets, sizes](const Tensor& dy, GradSink& g) {
      for (size_t i = 0; i < sizes.size(); ++i)
        if (g.wants(i)) g.add(i, slice(dy, axis, offsets[i], offsets[i] + sizes[i]));
    });
  }
  return out;
}

}  // namespace engine
