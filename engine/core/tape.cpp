#include "engine/core/tape.h"

#include <cxxabi.h>

#include <cstdlib>
#include <map>
#include <string>
#include <typeinfo>

#include "engine/core/profile.h"
#include "engine/ops/binary.h"
#include "engine/ops/copy.h"
#include "engine/ops/shape.h"

namespace engine {

namespace {

// The profile's name for a backward closure: "bw:" and the op function that recorded it, read
// from the closure's type ("engine::linear(...)::{lambda...}" -> "bw:linear"), so every op is
// profiled without naming itself.
const char* backward_stage_name(const BackwardFn& fn) {
  thread_local std::map<const std::type_info*, std::string> names;  // each thread has its own tape
  const std::type_info& type = fn.target_type();
  auto it = names.find(&type);
  if (it != names.end()) return it->second.c_str();
  int status = 0;
  char* demangled = abi::__cxa_demangle(type.name(), nullptr, nullptr, &status);
  std::string s = demangled && status == 0 ? demangled : type.name();
  std::free(demangled);
  for (size_t at; (at = s.find("(anonymous namespace)::")) != std::string::npos;) s.erase(at, 23);
  s = s.substr(0, s.find_first_of("(<"));
  const size_t colon = s.rfind("::");
  if (colon != std::string::npos) s = s.substr(colon + 2);
  return names.emplace(&type, "bw:" + s).first->second.c_str();
}

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
  auto slot = std::make_shared<GradSlot>();
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

void accumulate_grad(GradSlot& slot, const Tensor& grad) {
  NoGradScope no_grad;
  Tensor g = grad.is_contiguous() ? grad : grad.contiguous();
  if (!slot.grad.defined()) {
    slot.grad = slot.is_leaf ? g.clone() : g;
    slot.owned = slot.is_leaf;
  } else {
    slot.grad = add(slot.grad, g);  // out of place: an adopted gradient may alias another's
    slot.owned = true;
  }
  slot.window_axis = -1;  // no longer a zero-filled buffer with known windows
}

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
  if (!slot.grad.defined()) {
    slot.grad = Tensor::zeros(full, grad.dtype(), grad.device());
    // Only intermediates: a leaf's buffer outlives this backward, and its owner may change it.
    slot.window_axis = slot.is_leaf ? -1 : axis;
    slot.written_windows.clear();
  } else if (!slot.owned) {
    slot.grad = slot.grad.clone();  // adopted: another tensor may hold this buffer
    slot.window_axis = -1;
  }
  slot.owned = true;
  const int64_t end = start + grad.size(axis);
  bool still_zero = slot.window_axis == axis;
  for (const auto& [b, e] : slot.written_windows) still_zero = still_zero && (end <= b || e <= start);
  Tensor window = slice(slot.grad, axis, start, end);
  if (still_zero) {
    copy_into(grad, window);  // 0 + g = g: one pass instead of read, add, write back
    slot.written_windows.emplace_back(start, end);
  } else {
    copy_into(engine::add(window, grad), window);
    slot.window_axis = -1;
  }
}

void GradSink::add(size_t input, const Tensor& grad) {
  if (!wants(input)) return;
  ENGINE_CHECK(grad.shape() == shapes_[input], "backward",
               "gradient of input " + std::to_string(input) + " has shape " + shape_str(grad.shape()) +
                   ", the input has " + shape_str(shapes_[input]));
  accumulate_grad(*slots_[input], grad);
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
      StageTimer stage(profiling() ? backward_stage_name(e.backward) : nullptr);
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
