#include "tools/lib/train/expert_health.h"

#include <algorithm>
#include <cmath>
#include <regex>
#include <stdexcept>
#include <string>

#include "engine/core/tape.h"
#include "engine/ops/binary.h"
#include "engine/ops/reduce.h"
#include "engine/optim/clip.h"

namespace train {

ExpertHealth::ExpertHealth(const std::vector<moe::NamedParam>& params, const std::vector<int64_t>& moe_blocks,
                           int64_t experts, int64_t window)
    : layers_(static_cast<int64_t>(moe_blocks.size())), experts_(experts), window_(window) {
  if (window < 1) throw std::invalid_argument("ExpertHealth: the idle window must be at least 1 step");
  static const std::regex pattern(R"(^layers\.(\d+)\.moe\.experts\.(\d+)\..*)");
  for (const moe::NamedParam& p : params) {
    std::smatch m;
    if (!std::regex_match(p.name, m, pattern)) continue;
    const int64_t block = std::stoll(m[1]), expert = std::stoll(m[2]);
    size_t layer = 0;
    while (layer < moe_blocks.size() && moe_blocks[layer] != block) ++layer;
    if (layer == moe_blocks.size() || expert >= experts)
      throw std::invalid_argument("ExpertHealth: " + p.name + " is not an expert of a MoE layer");
    parts_.push_back({layer * static_cast<size_t>(experts) + static_cast<size_t>(expert), p.tensor});
  }
  last_active_.assign(static_cast<size_t>(layers_ * experts_), 0);
}

void ExpertHealth::record_activity(int64_t step, const std::vector<std::vector<int64_t>>& kept) {
  for (size_t l = 0; l < kept.size(); ++l)
    for (size_t e = 0; e < kept[l].size(); ++e)
      if (kept[l][e] > 0) last_active_.at(l * static_cast<size_t>(experts_) + e) = step;
}

void ExpertHealth::set_last_active(const std::vector<int64_t>& v, int64_t step) {
  if (v.empty()) {
    last_active_.assign(last_active_.size(), step);
    return;
  }
  if (v.size() != last_active_.size())
    throw std::invalid_argument("expert_last_active holds " + std::to_string(v.size()) + " values, the model has " +
                                std::to_string(last_active_.size()) + " experts in all");
  last_active_ = v;
}

// Each expert lives on one member of every expert group (equal across the copies of a data-
// parallel run), so a sum over the group counts it once, as clip_global_grad_norm does.
std::vector<double> ExpertHealth::summed(std::vector<double> local, engine::dist::Communicator& group) const {
  group.all_reduce_sum(local);
  return local;
}

void ExpertHealth::measure_gradients(engine::dist::Communicator& expert_group) {
  engine::NoGradScope no_grad;
  const size_t n = static_cast<size_t>(layers_ * experts_);
  std::vector<double> grad_sq(n, 0.0), weight_sq(n, 0.0);
  before_.clear();
  for (const Part& p : parts_) {
    grad_sq[p.slot] += engine::grad_sum_squares({p.tensor});  // an undefined gradient adds 0
    weight_sq[p.slot] += engine::sum_squares(p.tensor).item();
    before_.push_back(p.tensor.clone());
  }
  grad_norm_ = summed(std::move(grad_sq), expert_group);
  for (double& v : grad_norm_) v = std::sqrt(v);
  weight_sq_ = summed(std::move(weight_sq), expert_group);
}

void ExpertHealth::measure_update(engine::dist::Communicator& expert_group) {
  if (before_.size() != parts_.size()) throw std::logic_error("ExpertHealth: measure_update before measure_gradients");
  engine::NoGradScope no_grad;
  std::vector<double> change_sq(static_cast<size_t>(layers_ * experts_), 0.0);
  for (size_t i = 0; i < parts_.size(); ++i)
    change_sq[parts_[i].slot] += engine::sum_squares(engine::sub(parts_[i].tensor, before_[i])).item();
  before_.clear();
  const std::vector<double> change = summed(std::move(change_sq), expert_group);
  update_ratio_.resize(change.size());
  for (size_t i = 0; i < change.size(); ++i)
    update_ratio_[i] = weight_sq_[i] > 0 ? std::sqrt(change[i] / weight_sq_[i]) : collapse::kNaN;
}

void ExpertHealth::fill(std::vector<collapse::LayerStats>& stats, int64_t step) const {
  if (static_cast<int64_t>(stats.size()) != layers_)
    throw std::invalid_argument("ExpertHealth::fill: one stats per layer");
  // The window is steps (step - window, step]; before it is full, the steps so far (from 1).
  const int64_t window_start = std::max<int64_t>(1, step - window_ + 1);
  for (int64_t l = 0; l < layers_; ++l) {
    collapse::LayerStats& s = stats[l];
    const auto from = static_cast<std::ptrdiff_t>(l * experts_), to = from + experts_;
    if (!grad_norm_.empty()) s.expert_grad_norm.assign(grad_norm_.begin() + from, grad_norm_.begin() + to);
    if (!update_ratio_.empty()) s.expert_update_ratio.assign(update_ratio_.begin() + from, update_ratio_.begin() + to);
    // Routed experts of a layer are all the same size: the share of experts is the share of parameters.
    int64_t idle = 0;
    for (int64_t e = 0; e < experts_; ++e) idle += last_active_[l * experts_ + e] < window_start ? 1 : 0;
    s.idle_share = experts_ > 0 ? static_cast<double>(idle) / static_cast<double>(experts_) : collapse::kNaN;
  }
}

}  // namespace train
