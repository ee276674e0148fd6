// The optimizer library: AdamW against a scalar reference of the published update, its
// in-place and no-allocation guarantees, clip_grad_norm, and the learning-rate schedule.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

#include "tests/support/gradcheck.h"

using namespace engine;
using engine::testing::random_tensor;

namespace {

// The AdamW update written out per element in double, independently of the engine's kernel.
struct RefAdamW {
  AdamWConfig cfg;
  std::vector<double> p, m, v;
  int t = 0;
  RefAdamW(const AdamWConfig& c, std::vector<double> p0) : cfg(c), p(std::move(p0)), m(p.size()), v(p.size()) {}
  void step(const std::vector<double>& g, double lr, bool decay) {
    ++t;
    for (size_t i = 0; i < p.size(); ++i) {
      if (decay) p[i] = p[i] * (1.0 - lr * cfg.weight_decay);
      m[i] = cfg.beta1 * m[i] + (1.0 - cfg.beta1) * g[i];
      v[i] = cfg.beta2 * v[i] + (1.0 - cfg.beta2) * g[i] * g[i];
      const double m_hat = m[i] / (1.0 - std::pow(cfg.beta1, t));
      const double v_hat = v[i] / (1.0 - std::pow(cfg.beta2, t));
      p[i] -= lr * m_hat / (std::sqrt(v_hat) + cfg.eps);
    }
  }
};

// max over i of |a - b| / max(1, |b|)
double max_rel_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]) / std::max(1.0, std::abs(b[i])));
  return worst;
}

Tensor leaf(const std::vector<double>& values, const Shape& shape) {
  Tensor t = Tensor::from_vector(values, shape);
  t.set_requires_grad(true);
  return t;
}

// Gradients that change from step to step, with mixed signs and magnitudes.
std::vector<double> grad_values(size_t n, int step, double shift) {
  std::vector<double> g(n);
  for (size_t i = 0; i < n; ++i)
    g[i] = std::sin(1.3 * static_cast<double>(i) + 0.7 * step + shift) * (1.0 + 0.5 * step);
  return g;
}

}  // namespace

TEST_CASE("AdamW: f64 updates match the scalar reference, with and without decay", "[optim][adamw]") {
  AdamWConfig cfg;
  cfg.beta1 = 0.8;
  cfg.beta2 = 0.9;
  cfg.eps = 1e-6;
  cfg.weight_decay = 0.3;
  const std::vector<double> w0 = random_tensor({2, 3}, 11).to_vector();
  // 20000 elements: above the parallel grain, so the split into chunks is exercised too.
  const std::vector<double> b0 = random_tensor({20000}, 12).to_vector();
  Tensor w = leaf(w0, {2, 3}), b = leaf(b0, {20000});
  AdamW opt({{"w", w, true}, {"b", b, false}}, cfg);
  RefAdamW ref_w(cfg, w0), ref_b(cfg, b0);
  for (int step = 0; step < 5; ++step) {
    const double lr = 0.01 * (step + 1);  // a changing lr, as a schedule gives
    const auto gw = grad_values(w0.size(), step, 0.0), gb = grad_values(b0.size(), step, 2.0);
    w.set_grad(Tensor::from_vector(gw, {2, 3}));
    b.set_grad(Tensor::from_vector(gb, {20000}));
    opt.step(lr);
    ref_w.step(gw, lr, true);
    ref_b.step(gb, lr, false);
    INFO("step " << step + 1);
    CHECK(opt.step_count() == step + 1);
    CHECK(max_rel_diff(w.to_vector(), ref_w.p) < 1e-12);
    CHECK(max_rel_diff(b.to_vector(), ref_b.p) < 1e-12);
    CHECK(max_rel_diff(opt.m(0).to_vector(), ref_w.m) < 1e-12);
    CHECK(max_rel_diff(opt.v(1).to_vector(), ref_b.v) < 1e-12);
  }
  // The parameters moved: a no-op update would have failed above, but say so directly.
  CHECK(max_rel_diff(w.to_vector(), w0) > 1e-3);
}

TEST_CASE("AdamW: f32 updates match the reference to float precision", "[optim][adamw]") {
  AdamWConfig cfg;  // the defaults: beta2 0.95, weight decay 0.1
  const std::vector<double> p0 = random_tensor({300}, 13).to_vector();
  Tensor p = Tensor::from_vector(std::vector<float>(p0.begin(), p0.end()), {300});
  p.set_requires_grad(true);
  std::vector<double> p0f(p0.size());
  for (size_t i = 0; i < p0.size(); ++i) p0f[i] = static_cast<float>(p0[i]);
  AdamW opt({{"p", p, true}}, cfg);
  RefAdamW ref(cfg, p0f);
  for (int step = 0; step < 4; ++step) {
    const auto g = grad_values(p0.size(), step, 1.0);
    p.set_grad(Tensor::from_vector(std::vector<float>(g.begin(), g.end()), {300}));
    std::vector<double> gf(g.size());
    for (size_t i = 0; i < g.size(); ++i) gf[i] = static_cast<float>(g[i]);
    opt.step(0.05);
    ref.step(gf, 0.05, true);
  }
  CHECK(p.dtype() == DType::f32);
  CHECK(max_rel_diff(p.to_vector(), ref.p) < 2e-6);
}

TEST_CASE("AdamW: parameters without a gradient are untouched", "[optim][adamw]") {
  const std::vector<double> a0 = {1.0, -2.0, 3.0}, c0 = {0.5, 0.25};
  Tensor a = leaf(a0, {3}), c = leaf(c0, {2});
  AdamW opt({{"a", a, true}, {"c", c, true}});
  for (int step = 0; step < 3; ++step) {
    a.set_grad(Tensor::from_vector(std::vector<double>{0.1, 0.2, -0.3}, {3}));
    opt.step(0.1);
  }
  CHECK(c.to_vector() == c0);  // not even decayed
  CHECK(opt.m(1).to_vector() == std::vector<double>{0.0, 0.0});
  CHECK(opt.v(1).to_vector() == std::vector<double>{0.0, 0.0});
  CHECK(a.to_vector() != a0);
  CHECK(opt.step_count() == 3);
}

TEST_CASE("AdamW: the decay flag selects which parameters decay", "[optim][adamw]") {
  // With zero gradients the Adam term is exactly 0, so only the decay moves a parameter.
  AdamWConfig cfg;
  cfg.weight_decay = 0.5;
  const std::vector<double> x0 = {2.0, -4.0, 8.0};
  Tensor d = leaf(x0, {3}), n = leaf(x0, {3});
  AdamW opt({{"weight", d, true}, {"norm.gain", n, false}}, cfg);
  const double lr = 0.1;
  for (int step = 0; step < 2; ++step) {
    d.set_grad(Tensor::zeros({3}, DType::f64));
    n.set_grad(Tensor::zeros({3}, DType::f64));
    opt.step(lr);
  }
  const double f = (1.0 - lr * 0.5) * (1.0 - lr * 0.5);
  const auto dv = d.to_vector();
  for (size_t i = 0; i < x0.size(); ++i) CHECK(dv[i] == Approx(x0[i] * f).epsilon(1e-15));
  CHECK(n.to_vector() == x0);
  REQUIRE(opt.params().size() == 2);
  CHECK(opt.params()[0].name == "weight");
  CHECK(opt.params()[0].decay);
  CHECK_FALSE(opt.params()[1].decay);
}

TEST_CASE("AdamW: the update runs in place and allocates nothing", "[optim][adamw]") {
  Tensor w = random_tensor({64, 32}, 21, 0.1, DType::f32).set_requires_grad(true);
  Tensor x = random_tensor({16, 64}, 22, 1.0, DType::f32);
  Tensor y = random_tensor({16, 32}, 23, 1.0, DType::f32);
  AdamW opt({{"w", w, true}});
  void* const storage_before = w.raw_data();
  Tensor view;
  {
    NoGradScope no_grad;         // a view for reading, not part of the loss
    view = w.reshape({32, 64});  // shares the storage: must see every update
  }
  auto train_step = [&] {
    Tensor loss = mean_all(square(sub(matmul(x, w), y)));
    backward(loss);
    opt.step(1e-2);
    opt.zero_grad();
    return loss.item();
  };
  const double first = train_step();
  train_step();  // warm-up: the allocator's free lists now hold every size the step uses
  const MemoryStats warm = memory_stats(Device::cpu());
  double last = first;
  for (int i = 0; i < 5; ++i) last = train_step();
  const MemoryStats after = memory_stats(Device::cpu());
  CHECK(after.raw_allocations == warm.raw_allocations);
  CHECK(last < first);
  CHECK(w.raw_data() == storage_before);
  CHECK(view.same_storage(w));
  CHECK(view.to_vector() == w.to_vector());

  // step() alone: not even a cached block is handed out.
  w.set_grad(Tensor::full({64, 32}, 0.5, DType::f32));
  const MemoryStats before_step = memory_stats(Device::cpu());
  opt.step(1e-2);
  const MemoryStats after_step = memory_stats(Device::cpu());
  CHECK(after_step.raw_allocations == before_step.raw_allocations);
  CHECK(after_step.reuses == before_step.reuses);
  CHECK(after_step.bytes_in_use == before_step.bytes_in_use);
  CHECK(w.raw_data() == storage_before);
  CHECK(tape_size() == 0);  // nothing recorded by the update
}

TEST_CASE("AdamW: a quadratic converges to its minimum", "[optim][adamw]") {
  const std::vector<double> target_v = {1.5, -2.0, 0.25, 3.0, -0.75, 0.0, 2.5, -1.0};
  Tensor target = Tensor::from_vector(target_v, {8});
  Tensor x = Tensor::zeros({8}, DType::f64).set_requires_grad(true);
  AdamWConfig cfg;
  cfg.weight_decay = 0.0;  // decay would pull the minimum towards 0
  AdamW opt({{"x", x, false}}, cfg);
  const LrSchedule schedule{0.1, 20, 600, LrSchedule::cosine, 0.0};
  for (int64_t step = 1; step <= 600; ++step) {
    opt.zero_grad();
    backward(sum_all(square(sub(x, target))));
    opt.step(schedule.lr_at(step));
  }
  CHECK(max_rel_diff(x.to_vector(), target_v) < 1e-3);
}

TEST_CASE("AdamW: state restored through the accessors continues the same run", "[optim][adamw]") {
  const std::vector<double> p0 = random_tensor({10}, 31).to_vector();
  Tensor a = leaf(p0, {10}), b = leaf(p0, {10});
  AdamW full({{"p", a, true}}), first_half({{"p", b, true}});
  for (int step = 0; step < 2; ++step) {
    a.set_grad(Tensor::from_vector(grad_values(10, step, 0.0), {10}));
    b.set_grad(Tensor::from_vector(grad_values(10, step, 0.0), {10}));
    full.step(0.01);
    first_half.step(0.01);
  }
  // A "resumed" optimizer over a copy of the parameter, given the saved state.
  Tensor c = leaf(b.to_vector(), {10});
  AdamW resumed({{"p", c, true}});
  resumed.set_step_count(first_half.step_count());
  copy_into(first_half.m(0), resumed.m(0));
  copy_into(first_half.v(0), resumed.v(0));
  for (int step = 2; step < 4; ++step) {
    a.set_grad(Tensor::from_vector(grad_values(10, step, 0.0), {10}));
    c.set_grad(Tensor::from_vector(grad_values(10, step, 0.0), {10}));
    full.step(0.01);
    resumed.step(0.01);
  }
  CHECK(resumed.step_count() == 4);
  CHECK(c.to_vector() == a.to_vector());
  CHECK_THROWS_WITH(resumed.set_step_count(-1), Catch::Contains("step count must be >= 0"));
}

TEST_CASE("AdamW: bad configuration and inputs are refused", "[optim][adamw]") {
  Tensor p = leaf({1.0, 2.0}, {2});
  AdamWConfig cfg;
  cfg.beta1 = 1.0;
  CHECK_THROWS_WITH(AdamW({{"p", p, true}}, cfg), Catch::Contains("beta1 must be in [0, 1)"));
  cfg = AdamWConfig{};
  cfg.eps = 0.0;
  CHECK_THROWS_WITH(AdamW({{"p", p, true}}, cfg), Catch::Contains("eps must be > 0"));
  CHECK_THROWS_WITH(AdamW({{"ids", Tensor::zeros({2}, DType::i32), true}}), Catch::Contains("'ids' has element type"));
  AdamW opt({{"p", p, true}});
  p.set_grad(Tensor::zeros({2}, DType::f64));
  CHECK_THROWS_WITH(opt.step(-1.0), Catch::Contains("lr must be finite and >= 0"));
}

TEST_CASE("clip_grad_norm: the norm of known gradients, exactly", "[optim][clip]") {
  Tensor a = leaf({0.0, 0.0}, {2}), b = leaf({0.0}, {1}), none = leaf({1.0}, {1});
  a.set_grad(Tensor::from_vector(std::vector<double>{3.0, 4.0}, {2}));
  b.set_grad(Tensor::from_vector(std::vector<double>{12.0}, {1}));
  std::vector<Tensor> params = {a, none, b};  // `none` has no gradient: skipped
  CHECK(clip_grad_norm(params, 0.0) == 13.0);
  CHECK(clip_grad_norm(params, -1.0) == 13.0);
  CHECK(a.grad().to_vector() == std::vector<double>{3.0, 4.0});  // max_norm <= 0 only measures

  Tensor f = Tensor::zeros({2}, DType::f32).set_requires_grad(true);
  f.set_grad(Tensor::from_vector(std::vector<float>{3.0f, 4.0f}, {2}));
  std::vector<Tensor> f32_params = {f};
  CHECK(clip_grad_norm(f32_params, 0.0) == 5.0);
}

TEST_CASE("clip_grad_norm: scales only above max_norm, in place", "[optim][clip]") {
  Tensor a = leaf({0.0, 0.0}, {2}), b = leaf({0.0}, {1});
  a.set_grad(Tensor::from_vector(std::vector<double>{3.0, 4.0}, {2}));
  b.set_grad(Tensor::from_vector(std::vector<double>{12.0}, {1}));
  std::vector<Tensor> params = {a, b};

  // Below (and at) the limit: returned, nothing changes.
  CHECK(clip_grad_norm(params, 26.0) == 13.0);
  CHECK(clip_grad_norm(params, 13.0) == 13.0);
  CHECK(a.grad().to_vector() == std::vector<double>{3.0, 4.0});
  CHECK(b.grad().to_vector() == std::vector<double>{12.0});

  // Above: every gradient scaled by max_norm / (norm + 1e-6), in its own buffer.
  void* const buffer = a.grad().raw_data();
  CHECK(clip_grad_norm(params, 6.5) == 13.0);
  const double s = 6.5 / (13.0 + 1e-6);
  const auto ga = a.grad().to_vector(), gb = b.grad().to_vector();
  CHECK(ga[0] == Approx(3.0 * s).epsilon(1e-14));
  CHECK(ga[1] == Approx(4.0 * s).epsilon(1e-14));
  CHECK(gb[0] == Approx(12.0 * s).epsilon(1e-14));
  CHECK(a.grad().raw_data() == buffer);
  CHECK(clip_grad_norm(params, 0.0) == Approx(6.5).epsilon(1e-6));
}

TEST_CASE("clip_grad_norm: a non-finite norm is reported and nothing is scaled", "[optim][clip]") {
  Tensor a = leaf({0.0, 0.0}, {2});
  std::vector<Tensor> params = {a};
  a.set_grad(Tensor::from_vector(std::vector<double>{std::numeric_limits<double>::infinity(), 1.0}, {2}));
  CHECK(std::isinf(clip_grad_norm(params, 1.0)));
  CHECK(a.grad().to_vector()[1] == 1.0);
  a.set_grad(Tensor::from_vector(std::vector<double>{std::nan(""), 1.0}, {2}));
  CHECK(std::isnan(clip_grad_norm(params, 1.0)));
  CHECK(a.grad().to_vector()[1] == 1.0);
  std::vector<Tensor> empty;
  CHECK(clip_grad_norm(empty, 1.0) == 0.0);
}

TEST_CASE("LrSchedule: warm-up then cosine decay to the floor", "[optim][schedule]") {
  const LrSchedule s{1e-3, 10, 110, LrSchedule::cosine, 0.1};
  CHECK(s.lr_at(1) == Approx(1e-4).epsilon(1e-14));
  CHECK(s.lr_at(5) == Approx(5e-4).epsilon(1e-14));
  CHECK(s.lr_at(10) == Approx(1e-3).epsilon(1e-14));
  // Halfway through the decay the cosine term is 0: the midpoint of base and floor.
  CHECK(s.lr_at(60) == Approx(1e-4 + 0.5 * 9e-4).epsilon(1e-14));
  const double quarter = 1e-4 + 9e-4 * 0.5 * (1.0 + std::cos(M_PI * 25.0 / 100.0));
  CHECK(s.lr_at(35) == Approx(quarter).epsilon(1e-14));
  CHECK(s.lr_at(110) == Approx(1e-4).epsilon(1e-14));
  CHECK(s.lr_at(111) == Approx(1e-4).epsilon(1e-14));
  CHECK(s.lr_at(100000) == Approx(1e-4).epsilon(1e-14));
  for (int64_t step = 11; step <= 110; ++step) CHECK(s.lr_at(step) <= s.lr_at(step - 1));

  const LrSchedule to_zero{2.0, 0, 4, LrSchedule::cosine, 0.0};  // no warm-up
  CHECK(to_zero.lr_at(1) == Approx(1.0 + std::cos(M_PI / 4.0)).epsilon(1e-14));
  CHECK(to_zero.lr_at(4) == 0.0);
}

TEST_CASE("LrSchedule: constant after warm-up", "[optim][schedule]") {
  const LrSchedule s{3e-3, 4, 100, LrSchedule::constant, 0.1};
  CHECK(s.lr_at(1) == Approx(7.5e-4).epsilon(1e-14));
  CHECK(s.lr_at(4) == Approx(3e-3).epsilon(1e-14));
  CHECK(s.lr_at(5) == 3e-3);
  CHECK(s.lr_at(100) == 3e-3);
  CHECK(s.lr_at(5000) == 3e-3);
}

TEST_CASE("LrSchedule: bad arguments name the field", "[optim][schedule]") {
  using Catch::Contains;
  CHECK_THROWS_AS((LrSchedule{0.0, 1, 10, LrSchedule::cosine, 0.1}.lr_at(1)), std::invalid_argument);
  CHECK_THROWS_WITH((LrSchedule{0.0, 1, 10, LrSchedule::cosine, 0.1}.lr_at(1)), Contains("base_lr must be"));
  CHECK_THROWS_WITH((LrSchedule{std::nan(""), 1, 10, LrSchedule::cosine, 0.1}.lr_at(1)), Contains("base_lr"));
  CHECK_THROWS_WITH((LrSchedule{1e-3, -1, 10, LrSchedule::cosine, 0.1}.lr_at(1)),
                    Contains("warmup_steps must be >= 0"));
  CHECK_THROWS_WITH((LrSchedule{1e-3, 0, 0, LrSchedule::cosine, 0.1}.lr_at(1)), Contains("total_steps must be >= 1"));
  CHECK_THROWS_WITH((LrSchedule{1e-3, 20, 10, LrSchedule::cosine, 0.1}.lr_at(1)),
                    Contains("warmup_steps (20) must not exceed total_steps (10)"));
  CHECK_THROWS_WITH((LrSchedule{1e-3, 1, 10, LrSchedule::cosine, 1.5}.lr_at(1)),
                    Contains("min_lr_ratio must be in [0, 1]"));
  CHECK_THROWS_WITH((LrSchedule{1e-3, 1, 10, LrSchedule::cosine, 0.1}.lr_at(0)), Contains("step counts from 1"));
  CHECK_NOTHROW(LrSchedule{1e-3, 10, 10, LrSchedule::cosine, 0.0}.validate());
}
