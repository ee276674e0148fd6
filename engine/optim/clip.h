// Gradient clipping by the global L2 norm.
//
// Contract:
// - clip_grad_norm returns sqrt(sum of g^2) over the defined gradients of `params` (parameters
//   without a gradient are skipped). Each gradient's sum of squares is taken in double and the
//   per-parameter sums are added in the order of `params`, so the result does not depend on
//   thread counts.
// - When max_norm > 0 and norm > max_norm, every gradient is scaled in place (its own buffer,
//   which leaves own) by max_norm / (norm + 1e-6). Otherwise the gradients are untouched;
//   max_norm <= 0 only measures.
// - A non-finite norm (NaN or Inf, from an overflowed or NaN gradient) is returned as is and
//   the gradients are not scaled: scaling cannot repair them, and the caller decides whether to
//   skip the step.
#pragma once
#include <vector>

#include "engine/core/tensor.h"

namespace engine {

double clip_grad_norm(std::vector<Tensor>& params, double max_norm);

// The two halves, for a norm summed over processes (expert parallelism): the sum of squares of
// the defined gradients (each in double, added in order), and the scaling clip_grad_norm applies
// for a given norm.
double grad_sum_squares(const std::vector<Tensor>& params);
void scale_grads_to_norm(std::vector<Tensor>& params, double norm, double max_norm);

}  // namespace engine
