// The tape core: recording entries and running them backward. How a closure's gradient lands
// in a slot (accumulate_grad, GradSink) needs ops and lives in engine/ops; see tape.h.
#include "engine/core/tape.h"

#include "engine/core/profile.h"

namespace engine {

namespace {

struct TapeEntry {
  std::shared_ptr<GradSlot> output;
  std::vector<std::shared_ptr<GradSlot>> inputs;  // null where no gradient is wanted
  std::vector<Shape> input_shapes;
  BackwardFn backward;
};

struct Tape {
  std::vector<TapeEntry> entries;
  bool grad_mode = true;
};

Tape& this_thread_tape() {
  thread_local Tape tape;
  return tape;
}

}  // namespace

bool grad_enabled() { return this_thread_tape().grad_mode; }

NoGradScope::NoGradScope() : previous_(this_thread_tape().grad_mode) { this_thread_tape().grad_mode = false; }
NoGradScope::~NoGradScope() { this_thread_tape().grad_mode = previous_; }

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record(const Tensor& out, const std::vector<Tensor>& inputs, BackwardFn backward) {
  TapeEntry entry;
  auto slot = std::make_shared<GradSlot>(out.dtype());
  slot->is_leaf = false;
  out.impl()->grad_slot = slot;
  out.impl()->is_leaf = false;
  entry.output = std::move(slot);
  for (const Tensor& t : inputs) {
    entry.inputs.push_back(t.defined() ? t.impl()->grad_slot : nullptr);
    entry.input_shapes.push_back(t.defined() ? t.shape() : Shape{});
  }
  entry.backward = std::move(backward);
  this_thread_tape().entries.push_back(std::move(entry));
}

void backward(const Tensor& loss) {
  ENGINE_CHECK(loss.defined() && loss.numel() == 1, "backward", "the loss must hold exactly one element");
  ENGINE_CHECK(loss.requires_grad(), "backward", "the loss does not depend on any tensor that requires a gradient");
  Tape& tape = this_thread_tape();
  std::vector<TapeEntry> entries = std::move(tape.entries);
  tape.entries.clear();
  NoGradScope no_grad;  // closures compute with ops; they must not record
  accumulate_grad(*loss.impl()->grad_slot, Tensor::full(loss.shape(), 1.0, loss.dtype(), loss.device()));
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    TapeEntry& e = *it;
    if (e.output->grad.defined()) {
      StageTimer stage(profiling() ? backward_stage_name(e.backward.target_type()) : nullptr);
      GradSink sink(e.inputs, e.input_shapes);
      e.backward(e.output->grad, sink);
      e.output->grad = Tensor();  // an intermediate's gradient is not needed once propagated
    }
    e = TapeEntry();  // frees the activations this entry saved
  }
}

size_t tape_size() { return this_thread_tape().entries.size(); }
void clear_tape() { this_thread_tape().entries.clear(); }

}  // namespace engine
