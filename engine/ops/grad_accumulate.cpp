// How a whole gradient lands in a GradSlot (declared in engine/core/tape.h): the first is adopted,
// later ones are summed out of place. It needs the add and copy ops, so it lives here rather than
// in the tape core, which must not depend on engine/ops.
#include "engine/core/tape.h"
#include "engine/ops/binary.h"
#include "engine/ops/copy.h"

namespace engine {

void accumulate_grad(GradSlot& slot, const Tensor& grad) {
  NoGradScope no_grad;
  Tensor g = grad.is_contiguous() ? grad : grad.contiguous();
  if (g.dtype() != slot.dtype) g = cast(g, slot.dtype);  // e.g. a bf16 product's gradient of an f32 weight
  if (!slot.grad.defined()) {
    slot.grad = slot.is_leaf ? g.clone() : g;
    slot.owned = slot.is_leaf;
  } else {
    slot.grad = add(slot.grad, g);  // out of place: an adopted gradient may alias another's
    slot.owned = true;
  }
  slot.windows.reset();  // no longer a zero-filled buffer with known windows
}

void GradSink::add(size_t input, const Tensor& grad) {
  if (!wants(input)) return;
  ENGINE_CHECK(grad.shape() == shapes_[input], "backward",
               "gradient of input " + std::to_string(input) + " has shape " + shape_str(grad.shape()) +
                   ", the input has " + shape_str(shapes_[input]));
  accumulate_grad(*slots_[input], grad);
}

}  // namespace engine
