// AdamW with decoupled weight decay (Loshchilov & Hutter; the update torch.optim.AdamW runs).
//
// Contract:
// - The caller names every parameter and decides which ones decay (norm gains, biases and
//   embeddings are usually excluded); the optimizer never guesses from names or shapes.
// - State: m and v per parameter (same shape, dtype and device, zero at construction) and one
//   global step count t, advanced by every step() and used for the bias corrections.
// - step(lr), per parameter with a defined gradient, in this order:
//     p *= 1 - lr * weight_decay                      (decay parameters only)
//     m = beta1 * m + (1 - beta1) * g
//     v = beta2 * v + (1 - beta2) * g^2
//     p -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
//   Parameters without a gradient are left alone (their m and v too).
// - The update writes the parameter's own storage in one fused kernel per parameter: no tensor
//   is allocated per step, and views of the parameter see the new values.
// - Parameters and their gradients must be contiguous f32 or f64 (leaves always are).
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/hostdevice.h"
#include "engine/core/tensor.h"

namespace engine {

struct AdamWConfig {
  double lr = 3e-3;  // the default for step() callers that do not schedule; step(lr) overrides it
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
};

struct ParamGroupEntry {
  std::string name;
  Tensor param;
  bool decay;
};

// The scalars of one step, computed once on the host in double; the kernels convert them to
// the element type.
struct AdamWStepArgs {
  double lr;
  double beta1, beta2, eps;
  double decay_factor;     // 1 - lr * weight_decay, or 1 for parameters that do not decay
  double inv_correction1;  // 1 / (1 - beta1^t)
  double inv_correction2;  // 1 / (1 - beta2^t)
};

// One element's update, shared by the CPU loop and the CUDA kernel so both run the same
// expression. All arguments are already in the element type.
template <class T>
ENGINE_HD void adamw_element(T& p, T& m, T& v, T g, T lr, T beta1, T beta2, T eps, T decay_factor, T inv_c1, T inv_c2) {
  m = beta1 * m + (T(1) - beta1) * g;
  v = beta2 * v + (T(1) - beta2) * g * g;
  const T m_hat = m * inv_c1;
  const T v_hat = v * inv_c2;
  p = p * decay_factor - lr * m_hat / (std::sqrt(v_hat) + eps);
}

class AdamW {
 public:
  AdamW(std::vector<ParamGroupEntry> params, AdamWConfig config = {});

  // One update at learning rate `lr` (a schedule's value for this step).
  void step(double lr);
  void step() { step(config_.lr); }
  void zero_grad();  // drops every parameter's gradient

  const AdamWConfig& config() const { return config_; }
  const std::vector<ParamGroupEntry>& params() const { return params_; }
  size_t size() const { return params_.size(); }

  // Checkpointing: the state a resumed run needs to continue bit for bit.
  int64_t step_count() const { return step_count_; }
  void set_step_count(int64_t t);
  Tensor& m(size_t i) { return m_.at(i); }
  Tensor& v(size_t i) { return v_.at(i); }

 private:
  std::vector<ParamGroupEntry> params_;
  AdamWConfig config_;
  std::vector<Tensor> m_, v_;
  int64_t step_count_ = 0;
};

namespace cpu {
// param, m and v are updated in place; all four tensors are contiguous with the same dtype and numel.
void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWStepArgs& args);
}  // namespace cpu
namespace cuda {
void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWStepArgs& args);
}  // namespace cuda

}  // namespace engine
