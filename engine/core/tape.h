// Reverse-mode autodiff on a tape.
//
// Every differentiable op that runs while grad mode is on and one of its inputs requires a
// gradient calls record(): one tape entry holding the op's backward closure, the output's
// GradSlot and its inputs' GradSlots. backward(loss) seeds d(loss)/d(loss) = 1 and runs the
// entries newest first, so a tensor's gradient is complete (all its uses accumulated) before
// the entry that produced it reads it. Entries are destroyed as they run, releasing the
// activations their closures saved; gradients of intermediate tensors are dropped as soon as
// they have been propagated. Only leaves (parameters) keep .grad after backward.
//
// The tape is per thread. Without backward() (evaluation), run under NoGradScope, or the tape
// keeps growing.
#pragma once
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "engine/core/tensor.h"

namespace engine {

struct GradWindows;  // engine/ops/grad_window.cpp: which windows of a zero-filled gradient hold data

struct GradSlot {
  explicit GradSlot(DType tensor_dtype = DType::f32) : dtype(tensor_dtype) {}
  Tensor grad;  // contiguous, same shape, dtype and device as the tensor
  // The tensor's type, which its gradient keeps: a closure may hand an f32 parameter a gradient
  // computed from bf16 activations, and accumulation casts it (engine/ops/grad_accumulate.cpp).
  DType dtype;
  bool is_leaf = true;  // leaves own their gradient buffer: optimizers may scale it in place
  bool owned = false;  // grad's buffer is this slot's alone (not adopted from a closure), so it may be updated in place
  // Set by GradSink::add_window when it zero-fills grad; whatever else writes grad resets it
  // (add_window starts afresh on an undefined grad).
  std::shared_ptr<GradWindows> windows;
};

// Where a backward closure writes the gradients of its inputs. The tape core only declares how
// a gradient lands: add and add_window need ops (add, copy, slice), so they are defined in
// engine/ops (grad_accumulate.cpp, grad_window.cpp), keeping engine/core free of engine/ops.
class GradSink {
 public:
  GradSink(const std::vector<std::shared_ptr<GradSlot>>& slots, const std::vector<Shape>& shapes)
      : slots_(slots), shapes_(shapes) {}
  bool wants(size_t input) const { return input < slots_.size() && slots_[input] != nullptr; }
  void add(size_t input, const Tensor& grad);  // accumulates; checks shape
  // Accumulates `grad` into the window [start, start + grad.size(axis)) of the input's gradient
  // along `axis`, in place: slicing many windows of one tensor (MoE experts' rows, q/k/v) then
  // costs each window's size, not a zero-filled full-size tensor per window.
  void add_window(size_t input, int axis, int64_t start, const Tensor& grad);

 private:
  const std::vector<std::shared_ptr<GradSlot>>& slots_;
  const std::vector<Shape>& shapes_;
};

using BackwardFn = std::function<void(const Tensor& grad_out, GradSink& grads)>;

bool grad_enabled();

class NoGradScope {
 public:
  NoGradScope();
  ~NoGradScope();
  NoGradScope(const NoGradScope&) = delete;
  NoGradScope& operator=(const NoGradScope&) = delete;

 private:
  bool previous_;
};

// True when grad mode is on and any input requires a gradient: the op must record.
bool needs_grad(const std::vector<Tensor>& inputs);

// Makes `out` a non-leaf that requires grad and pushes one tape entry.
void record(const Tensor& out, const std::vector<Tensor>& inputs, BackwardFn backward);

// Runs the tape backward from a one-element loss and clears it.
void backward(const Tensor& loss);

size_t tape_size();
void clear_tape();  // drops recorded history without computing gradients

// Adds `grad` into the slot: the first gradient is adopted (cloned for leaves), later ones summed.
// Defined in engine/ops/grad_accumulate.cpp.
void accumulate_grad(GradSlot& slot, const Tensor& grad);

}  // namespace engine
