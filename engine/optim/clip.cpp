// clip_grad_norm, built from existing ops: the norm from sum_squares (one pass per gradient,
// squares summed in double) and the scaling from scale() written back with copy_into, so it
// runs on any device the ops run on.
#include "engine/optim/clip.h"

#include <cmath>

#include "engine/core/tape.h"
#include "engine/ops/binary.h"
#include "engine/ops/copy.h"
#include "engine/ops/reduce.h"

namespace engine {

double grad_sum_squares(const std::vector<Tensor>& params) {
  NoGradScope no_grad;  // gradient bookkeeping is not part of the model
  double sum_sq = 0.0;
  for (const Tensor& p : params) {
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    // Squares in double: f32 squares of large gradients would overflow or lose the small ones.
    sum_sq += sum_squares(g).item();
  }
  return sum_sq;
}

void scale_grads_to_norm(std::vector<Tensor>& params, double norm, double max_norm) {
  if (!(max_norm > 0.0 && std::isfinite(norm) && norm > max_norm)) return;
  NoGradScope no_grad;
  const double factor = max_norm / (norm + 1e-6);
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    copy_into(scale(g, factor), g);  // g shares the slot's buffer: the gradient changes in place
  }
}

double clip_grad_norm(std::vector<Tensor>& params, double max_norm) {
  const double norm = std::sqrt(grad_sum_squares(params));
  scale_grads_to_norm(params, norm, max_norm);
  return norm;
}

}  // namespace engine
