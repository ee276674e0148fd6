#include "tests/support/gradcheck.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <sstream>

namespace engine::testing {

Tensor doubles(const std::vector<double>& values, const Shape& shape) { return Tensor::from_vector(values, shape); }
Tensor ids(const std::vector<int32_t>& values) {
  return Tensor::from_vector(values, {static_cast<int64_t>(values.size())});
}

bool bf16_available() {
  std::string why;
  if (cpu::bf16_matmul_supported(&why)) return true;
  WARN("skipped: " << why);
  return false;
}

Tensor random_tensor(const Shape& shape, uint64_t seed, double std, DType dtype) {
  Generator gen(seed);
  return randn(shape, gen, 0.0, std, dtype);
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) throw std::invalid_argument("max_abs_diff: shapes differ " + a.str() + " vs " + b.str());
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  double m = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = std::fabs(x[i] - y[i]);
    if (std::isnan(d)) return INFINITY;
    m = std::max(m, d);
  }
  return m;
}

GradCheckResult gradcheck(const TensorFn& f, std::vector<Tensor> inputs, GradCheckOptions opt) {
  GradCheckResult result;
  for (Tensor& x : inputs) {
    ENGINE_CHECK(x.dtype() == DType::f64 && x.device().is_cpu() && x.is_contiguous(), "gradcheck",
                 "inputs must be contiguous f64 CPU tensors, got " + x.str());
    x.zero_grad();
    x.set_requires_grad(true);
  }
  clear_tape();

  Tensor out = f(inputs);
  const Tensor weight = random_tensor(out.shape(), opt.seed);
  auto loss_of = [&](const Tensor& y) { return sum_all(mul(y, weight)); };
  backward(loss_of(out));

  std::ostringstream report;
  double worst_excess = -INFINITY;
  NoGradScope no_grad;
  for (size_t i = 0; i < inputs.size(); ++i) {
    Tensor& x = inputs[i];
    const Tensor grad = x.grad();
    const std::vector<double> analytic =
        grad.defined() ? grad.to_vector() : std::vector<double>(static_cast<size_t>(x.numel()), 0.0);
    double* p = x.data<double>();
    for (int64_t j = 0; j < x.numel(); ++j) {
      const double saved = p[j];
      p[j] = saved + opt.eps;
      const double up = loss_of(f(inputs)).item();
      p[j] = saved - opt.eps;
      const double down = loss_of(f(inputs)).item();
      p[j] = saved;
      const double numeric = (up - down) / (2 * opt.eps);
      const double err = std::fabs(analytic[j] - numeric);
      const double allowed = opt.atol + opt.rtol * std::fabs(numeric);
      result.max_abs_error = std::max(result.max_abs_error, err);
      if (!(err <= allowed)) result.ok = false;  // also catches NaN
      if (err - allowed > worst_excess || std::isnan(err)) {
        worst_excess = err - allowed;
        report.str("");
        report << "input " << i << " " << x.str() << " element " << j << ": analytic " << analytic[j] << ", numeric "
               << numeric << ", |error| " << err << ", allowed " << allowed
               << (grad.defined() ? "" : " (backward produced no gradient)");
      }
    }
  }
  result.report = (result.ok ? "passed; closest element: " : "FAILED; worst element: ") + report.str();
  return result;
}

}  // namespace engine::testing
