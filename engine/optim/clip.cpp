// clip_grad_norm, built from existing ops: the norm from sum_squares_each (one pass per
// gradient, squares summed in double, one read-back per device) and the scaling from scale() written back with
// copy_into, so it runs on any device the ops run on.
#include "engine/optim/clip.h"

#include <cmath>
#include <utility>
#include <vector>

#include "engine/core/tape.h"
#include "engine/ops/binary.h"
#include "engine/ops/copy.h"
#include "engine/ops/reduce.h"

namespace engine {

double grad_sum_squares(const std::vector<Tensor>& params) {
  NoGradScope no_grad;  // gradient bookkeeping is not part of the model
  // One buffer of per-gradient sums per device, read back once: reading each sum as it is made
  // would make the host wait for the device once per parameter (about 1,100 times a step on a
  // wide model). Squares in double: f32 squares of large gradients would overflow or lose the
  // small ones.
  std::vector<Device> devices;
  std::vector<std::vector<Tensor>> grads;        // per device, in params order
  std::vector<std::pair<size_t, size_t>> where;  // per defined gradient: (device slot, index)
  for (const Tensor& p : params) {
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    size_t d = 0;
    while (d < devices.size() && !(devices[d] == g.device())) ++d;
    if (d == devices.size()) {
      devices.push_back(g.device());
      grads.emplace_back();
    }
    where.emplace_back(d, grads[d].size());
    grads[d].push_back(g);
  }
  std::vector<std::vector<double>> sums;
  for (const auto& group : grads) sums.push_back(sum_squares_each(group).to_vector());
  double sum_sq = 0.0;
  for (const auto& [d, i] : where) sum_sq += sums[d][i];  // added in params order, as before
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
