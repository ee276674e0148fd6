// AdamW: state set-up, per-step scalars, and the CPU kernel. The per-element formula is
// adamw_element in adamw.h, which the CUDA kernel (adamw.cu) runs too.
#include "engine/optim/adamw.h"

#include <stdexcept>

#include "engine/core/dispatch.h"
#include "engine/core/parallel.h"
#include "engine/core/tape.h"

namespace engine {

namespace {
void check_config(const AdamWConfig& c) {
  // Written so that NaN fails every check.
  ENGINE_CHECK(c.lr >= 0.0, "AdamW", "lr must be >= 0, got " + std::to_string(c.lr));
  ENGINE_CHECK(c.beta1 >= 0.0 && c.beta1 < 1.0, "AdamW", "beta1 must be in [0, 1), got " + std::to_string(c.beta1));
  ENGINE_CHECK(c.beta2 >= 0.0 && c.beta2 < 1.0, "AdamW", "beta2 must be in [0, 1), got " + std::to_string(c.beta2));
  ENGINE_CHECK(c.eps > 0.0, "AdamW", "eps must be > 0, got " + std::to_string(c.eps));
  ENGINE_CHECK(c.weight_decay >= 0.0, "AdamW", "weight_decay must be >= 0, got " + std::to_string(c.weight_decay));
}
}  // namespace

AdamW::AdamW(std::vector<ParamGroupEntry> params, AdamWConfig config) : params_(std::move(params)), config_(config) {
  check_config(config_);
  m_.reserve(params_.size());
  v_.reserve(params_.size());
  for (const ParamGroupEntry& e : params_) {
    ENGINE_CHECK(e.param.defined(), "AdamW", "parameter '" + e.name + "' is undefined");
    ENGINE_CHECK(e.param.dtype() == DType::f32 || e.param.dtype() == DType::f64, "AdamW",
                 "parameter '" + e.name + "' has element type " + dtype_name(e.param.dtype()) + " (f32 or f64 only)");
    // The fused kernel walks the storage flat; a strided view would update the wrong elements.
    ENGINE_CHECK(e.param.is_contiguous(), "AdamW", "parameter '" + e.name + "' is not contiguous");
    // Allocated once here, so step() allocates nothing.
    m_.push_back(Tensor::zeros_like(e.param));
    v_.push_back(Tensor::zeros_like(e.param));
  }
}

void AdamW::set_step_count(int64_t t) {
  ENGINE_CHECK(t >= 0, "AdamW::set_step_count", "step count must be >= 0, got " + std::to_string(t));
  step_count_ = t;
}

void AdamW::step(double lr) {
  ENGINE_CHECK(std::isfinite(lr) && lr >= 0.0, "AdamW::step", "lr must be finite and >= 0, got " + std::to_string(lr));
  NoGradScope no_grad;  // the update is not part of any model: nothing may be recorded
  ++step_count_;
  const double t = static_cast<double>(step_count_);
  AdamWStepArgs args{};
  args.lr = lr;
  args.beta1 = config_.beta1;
  args.beta2 = config_.beta2;
  args.eps = config_.eps;
  args.inv_correction1 = 1.0 / (1.0 - std::pow(config_.beta1, t));
  args.inv_correction2 = 1.0 / (1.0 - std::pow(config_.beta2, t));
  for (size_t i = 0; i < params_.size(); ++i) {
    ParamGroupEntry& e = params_[i];
    const Tensor g = e.param.grad();
    if (!g.defined()) continue;
    ENGINE_CHECK(g.shape() == e.param.shape() && g.dtype() == e.param.dtype() && g.device() == e.param.device(),
                 "AdamW::step",
                 "gradient of '" + e.name + "' (" + g.str() + ") does not match the parameter (" + e.param.str() + ")");
    ENGINE_CHECK(g.is_contiguous(), "AdamW::step", "gradient of '" + e.name + "' is not contiguous");
    args.decay_factor = e.decay ? 1.0 - lr * config_.weight_decay : 1.0;
    ON_DEVICE(e.param, adamw_update, e.param, g, m_[i], v_[i], args);
  }
}

void AdamW::zero_grad() {
  for (ParamGroupEntry& e : params_) e.param.zero_grad();
}

namespace cpu {

namespace {
template <class T>
ENGINE_SIMD_CLONES void adamw_span(T* __restrict p, const T* __restrict g, T* __restrict m, T* __restrict v, int64_t n,
                                   T lr, T beta1, T beta2, T eps, T decay_factor, T inv_c1, T inv_c2) {
  for (int64_t i = 0; i < n; ++i)
    adamw_element(p[i], m[i], v[i], g[i], lr, beta1, beta2, eps, decay_factor, inv_c1, inv_c2);
}
}  // namespace

void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWStepArgs& a) {
  DISPATCH_FLOAT(param.dtype(), "adamw_update", {
    scalar_t* p = param.data<scalar_t>();
    const scalar_t* g = grad.data<scalar_t>();
    scalar_t* pm = m.data<scalar_t>();
    scalar_t* pv = v.data<scalar_t>();
    const auto c = [](double x) { return static_cast<scalar_t>(x); };
    parallel_for(param.numel(), 1 << 13, [&](int64_t b, int64_t e) {
      adamw_span<scalar_t>(p + b, g + b, pm + b, pv + b, e - b, c(a.lr), c(a.beta1), c(a.beta2), c(a.eps),
                           c(a.decay_factor), c(a.inv_correction1), c(a.inv_correction2));
    });
  });
}

}  // namespace cpu
}  // namespace engine
