// GradSink::add_window (declared in engine/core/tape.h): slice's backward, accumulating a window's
// gradient into the input's full gradient in place. An intermediate's gradient that this file
// zero-filled remembers which windows were written since (GradWindows): a window that overlaps
// none of them lands on zeros and is copied in rather than added (q, k and v's windows of qkv).
#include <utility>
#include <vector>

#include "engine/core/tape.h"
#include "engine/ops/binary.h"
#include "engine/ops/copy.h"
#include "engine/ops/shape.h"

namespace engine {

struct GradWindows {
  int axis;                                          // every window below lies along this axis
  std::vector<std::pair<int64_t, int64_t>> written;  // [start, end); outside them the buffer is zero
};

void GradSink::add_window(size_t input, int axis, int64_t start, const Tensor& grad) {
  if (!wants(input)) return;
  const Shape& full = shapes_[input];
  bool fits = grad.ndim() == static_cast<int>(full.size()) && axis >= 0 && axis < grad.ndim() && start >= 0 &&
              start + grad.size(axis) <= full[static_cast<size_t>(axis)];
  for (int a = 0; fits && a < grad.ndim(); ++a) fits = a == axis || grad.size(a) == full[static_cast<size_t>(a)];
  ENGINE_CHECK(fits, "backward",
               "gradient window " + shape_str(grad.shape()) + " at " + std::to_string(start) + " on axis " +
                   std::to_string(axis) + " does not fit input " + std::to_string(input) + " of shape " +
                   shape_str(full));
  NoGradScope no_grad;
  GradSlot& slot = *slots_[input];
  if (grad.dtype() != slot.dtype) return add_window(input, axis, start, cast(grad, slot.dtype));
  if (!slot.grad.defined()) {
    slot.grad = Tensor::zeros(full, grad.dtype(), grad.device());
    // Only intermediates: a leaf's buffer outlives this backward, and its owner may change it.
    slot.windows = slot.is_leaf ? nullptr : std::make_shared<GradWindows>(GradWindows{axis, {}});
  } else if (!slot.owned) {
    slot.grad = slot.grad.clone();  // adopted: another tensor may hold this buffer
    slot.windows.reset();
  }
  slot.owned = true;
  const int64_t end = start + grad.size(axis);
  bool still_zero = slot.windows && slot.windows->axis == axis;
  if (still_zero)
    for (const auto& [b, e] : slot.windows->written) still_zero = still_zero && (end <= b || e <= start);
  Tensor window = slice(slot.grad, axis, start, end);
  if (still_zero) {
    copy_into(grad, window);  // 0 + g = g: one pass instead of read, add, write back
    slot.windows->written.emplace_back(start, end);
  } else {
    copy_into(engine::add(window, grad), window);
    slot.windows.reset();
  }
}

}  // namespace engine
