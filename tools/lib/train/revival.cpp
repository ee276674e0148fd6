#include "tools/lib/train/revival.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>

#include "tools/lib/collapse/metrics.h"

namespace train {

using engine::Tensor;
namespace rc = runconfig;

namespace {

// The optimizer entry of a parameter: AdamW holds the model's own tensors, so storage identity
// finds it whatever the parameter is named.
size_t optimizer_index(const engine::AdamW& optimizer, const Tensor& param) {
  for (size_t i = 0; i < optimizer.size(); ++i)
    if (optimizer.params()[i].param.raw_data() == param.raw_data()) return i;
  throw std::logic_error("revival: a parameter the optimizer does not hold");
}

void zero(Tensor t) { engine::copy_into(Tensor::zeros_like(t), t); }

void zero_moments(engine::AdamW& optimizer, const Tensor& param, int64_t row = -1) {
  const size_t i = optimizer_index(optimizer, param);
  for (Tensor* moment : {&optimizer.m(i), &optimizer.v(i)})
    zero(row < 0 ? *moment : engine::slice(*moment, 0, row, row + 1));
}

// dst = source + N(0, noise^2), or N(0, std^2) drawn fresh (a zero std gives zeros: the biases).
void redraw(Tensor dst, const Tensor* source, double std, engine::Generator& gen) {
  Tensor value =
      std > 0 ? engine::randn(dst.shape(), gen, 0.0, std, dst.dtype(), dst.device()) : Tensor::zeros_like(dst);
  if (source) value = engine::add(*source, value);
  engine::copy_into(value, dst);
}

}  // namespace

Revival::Revival(const rc::RunConfig& config, const moe::TransformerLM& model)
    : config_(config.moe.revival),
      dead_fraction_(config.diagnostics.dead_fraction),
      experts_(config.moe.num_experts),
      // Its own stream (the model's are seed*2+1 and seed*2+2): a revival shifts no router noise
      // or dropout draw, and the stream is the same on every rank.
      gen_(model.config().seed * 2 + 3) {
  int64_t layers = 0;
  for (int64_t l = 0; l < model.config().n_layers; ++l) layers += moe::is_moe_layer(model.config(), l) ? 1 : 0;
  window_.assign(static_cast<size_t>(layers * experts_), 0);
}

std::vector<RevivalEvent> Revival::after_step(int64_t step, const std::vector<std::vector<int64_t>>& counts,
                                              moe::TransformerLM& model, engine::AdamW& optimizer) {
  std::vector<RevivalEvent> events;
  if (!enabled()) return events;
  for (size_t l = 0; l < counts.size(); ++l)
    for (int64_t e = 0; e < experts_; ++e) window_[l * experts_ + e] += counts[l][e];
  if (step % config_.check_every != 0) return events;
  engine::NoGradScope no_grad;
  std::vector<moe::MoeLayer*> layers = model.moe_layers();
  collapse::Thresholds thresholds;
  thresholds.dead_fraction = dead_fraction_;
  for (size_t l = 0; l < layers.size(); ++l) {
    const std::vector<int64_t> load(window_.begin() + l * experts_, window_.begin() + (l + 1) * experts_);
    if (std::accumulate(load.begin(), load.end(), int64_t{0}) == 0) continue;  // no tokens: nothing measured
    collapse::LayerStats stats;
    collapse::compute_load(stats, load, layers[l]->config().router.top_k, 0, thresholds);
    const int64_t busiest = std::max_element(load.begin(), load.end()) - load.begin();
    const bool copy = config_.mode == rc::RevivalMode::copy_busiest;
    for (int dead : stats.dead) {
      revive(*layers[l], dead, copy ? busiest : -1, optimizer, model.config());
      events.push_back({step, static_cast<int64_t>(l), dead, copy ? busiest : -1});
    }
  }
  std::fill(window_.begin(), window_.end(), 0);
  return events;
}

void Revival::revive(moe::MoeLayer& layer, int64_t expert, int64_t source, engine::AdamW& optimizer,
                     const moe::ModelConfig& model) {
  const double noise = config_.noise;
  const int64_t first = layer.first_local_expert();
  const moe::ExpertMlp& dead = layer.experts().at(expert - first);
  const moe::ExpertMlp* busiest = source >= 0 ? &layer.experts().at(source - first) : nullptr;
  // Each weight with its init std; the biases are zero at init.
  const std::pair<Tensor moe::ExpertMlp::*, double> weights[] = {{&moe::ExpertMlp::w1, model.init_std},
                                                                 {&moe::ExpertMlp::b1, 0.0},
                                                                 {&moe::ExpertMlp::w2, moe::residual_init_std(model)},
                                                                 {&moe::ExpertMlp::b2, 0.0},
                                                                 {&moe::ExpertMlp::w_up, model.init_std}};
  for (const auto& [member, init_std] : weights) {
    const Tensor& t = dead.*member;
    if (!t.defined()) continue;  // swiglu has no biases, gelu no w_up
    if (busiest)
      redraw(t, &(busiest->*member), noise, gen_);
    else
      redraw(t, nullptr, init_std, gen_);
    zero_moments(optimizer, t);
  }
  const moe::RouterWeights& router = layer.router_weights();
  for (const Tensor* w : {&router.gate, &router.noise}) {
    if (!w->defined()) continue;
    const Tensor row = engine::slice(*w, 0, expert, expert + 1);
    if (busiest) {
      const Tensor from = engine::slice(*w, 0, source, source + 1);
      redraw(row, &from, noise, gen_);
    } else {
      redraw(row, nullptr, model.init_std, gen_);
    }
    zero_moments(optimizer, *w, expert);
  }
  std::vector<float> bias = layer.bias();
  bias.at(static_cast<size_t>(expert)) = 0.0f;
  layer.set_bias(bias);
}

void Revival::save(ckpt::Checkpoint& c) const {
  if (!enabled()) return;
  c.rng["revival"] = {gen_.seed(), gen_.offset()};
  c.revival_window = window_;
}

void Revival::restore(const ckpt::Checkpoint& c, const std::string& source) {
  if (!enabled()) return;
  const auto it = c.rng.find("revival");
  if (it == c.rng.end()) throw ckpt::CheckpointError(source + ": /state/rng/revival: missing (moe.revival is on)");
  gen_.set_state(it->second[0], it->second[1]);
  if (c.revival_window.size() != window_.size())
    throw ckpt::CheckpointError(source + ": /state/revival/window: must hold " + std::to_string(window_.size()) +
                                " counts (MoE layers x experts), holds " + std::to_string(c.revival_window.size()));
  window_ = c.revival_window;
}

}  // namespace train
