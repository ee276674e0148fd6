#include "models/moe_layer.h"

#include <stdexcept>

namespace moe {

using namespace engine;

ExpertMlp ExpertMlp::create(ParamStore& params, const std::string& prefix, ExpertActivation activation, int64_t d_model,
                            int64_t d_hidden, double init_std, double residual_std, Generator& gen, DType dtype,
                            Device device) {
  ExpertMlp m;
  m.activation = activation;
  if (activation == ExpertActivation::gelu) {
    m.w1 = params.add(prefix + ".fc1.weight", randn({d_hidden, d_model}, gen, 0.0, init_std, dtype, device), true);
    m.b1 = params.add(prefix + ".fc1.bias", Tensor::zeros({d_hidden}, dtype, device), false);
    m.w2 = params.add(prefix + ".fc2.weight", randn({d_model, d_hidden}, gen, 0.0, residual_std, dtype, device), true);
    m.b2 = params.add(prefix + ".fc2.bias", Tensor::zeros({d_model}, dtype, device), false);
  } else {
    m.w1 =
        params.add(prefix + ".gate_proj.weight", randn({d_hidden, d_model}, gen, 0.0, init_std, dtype, device), true);
    m.w_up =
        params.add(prefix + ".up_proj.weight", randn({d_hidden, d_model}, gen, 0.0, init_std, dtype, device), true);
    m.w2 = params.add(prefix + ".down_proj.weight", randn({d_model, d_hidden}, gen, 0.0, residual_std, dtype, device),
                      true);
  }
  return m;
}

Tensor ExpertMlp::forward(const Tensor& x) const {
  if (activation == ExpertActivation::gelu) return linear(gelu(linear(x, w1, b1)), w2, b2);
  return linear(swiglu(linear(x, w1), linear(x, w_up)), w2);
}

MoeLayer::MoeLayer(const MoeLayerConfig& config, ParamStore& params, const std::string& prefix, double init_std,
                   double residual_std, Generator& gen)
    : config_(config), bias_(static_cast<size_t>(config.router.num_experts), 0.0f) {
  check_router_config(config.router);  // a rule of the router is refused here, not only by the config loader
  const int64_t E = config.router.num_experts, d = config.d_model;
  const RouterWeightKind learns = router_info(config.router.kind).weights;
  if (learns != RouterWeightKind::none)
    router_.gate =
        params.add(prefix + ".router.weight", randn({E, d}, gen, 0.0, init_std, config.dtype, config.device), true);
  if (learns == RouterWeightKind::gate_noise)
    router_.noise = params.add(prefix + ".router.noise.weight",
                               randn({E, d}, gen, 0.0, init_std, config.dtype, config.device), true);
  const int ranks = config.expert_group ? config.expert_group->size() : 1;
  if (E % ranks != 0)
    throw std::invalid_argument("MoeLayer: " + std::to_string(E) +
                                " experts cannot be spread evenly over an expert "
                                "group of " +
                                std::to_string(ranks) + " ranks (num_experts must be a multiple)");
  const int64_t local = E / ranks;
  first_local_ = (ranks > 1 ? config.expert_group->rank() : 0) * local;
  // Every rank draws every expert's initial weights in the same order and keeps its own, so a
  // run's initial model is the same whatever the number of ranks.
  for (int64_t e = 0; e < E; ++e) {
    ParamStore elsewhere;  // another rank's expert: drawn, then freed at once
    const bool mine = e >= first_local_ && e < first_local_ + local;
    ExpertMlp m =
        ExpertMlp::create(mine ? params : elsewhere, prefix + ".experts." + std::to_string(e), config.activation, d,
                          config.d_expert, init_std, residual_std, gen, config.dtype, config.device);
    if (mine) experts_.push_back(std::move(m));
  }
  compute_meter_ = std::make_shared<Meter>();
  compute_meter_->read = device_seconds(config.device);
  wait_meter_ = std::make_shared<Meter>();
  if (ranks > 1) {
    std::shared_ptr<dist::Communicator> group = config.expert_group;
    wait_meter_->read = [group] { return group->waited_seconds(); };
  }
  const int64_t d_shared = config.d_shared > 0 ? config.d_shared : config.d_expert;
  for (int64_t s = 0; s < config.num_shared_experts; ++s)
    shared_.push_back(ExpertMlp::create(params, prefix + ".shared_experts." + std::to_string(s), config.activation, d,
                                        d_shared, init_std, residual_std, gen, config.dtype, config.device));
}

Tensor dispatch(const Tensor& tokens, const Routing& routing) { return gather_rows(tokens, routing.slot_token); }

// Every expert at once: dispatch left expert e's rows as one block (routing.expert_offsets), so
// each MLP layer is one grouped product over all experts - ExpertMlp::forward's equations, with
// the activation applied to all rows together. An idle expert contributes no rows and receives
// no gradient.
Tensor run_experts(const std::vector<ExpertMlp>& experts, const Tensor& expert_rows,
                   const std::vector<int64_t>& offsets) {
  if (experts.empty()) throw std::invalid_argument("run_experts: no experts");
  auto each = [&](Tensor ExpertMlp::*member) {
    std::vector<Tensor> out;
    for (const ExpertMlp& e : experts) out.push_back(e.*member);
    return out;
  };
  if (experts.front().activation == ExpertActivation::gelu) {
    Tensor hidden = gelu(grouped_linear(expert_rows, offsets, each(&ExpertMlp::w1), each(&ExpertMlp::b1)));
    return grouped_linear(hidden, offsets, each(&ExpertMlp::w2), each(&ExpertMlp::b2));
  }
  Tensor gate = grouped_linear(expert_rows, offsets, each(&ExpertMlp::w1));
  Tensor up = grouped_linear(expert_rows, offsets, each(&ExpertMlp::w_up));
  return grouped_linear(swiglu(gate, up), offsets, each(&ExpertMlp::w2));
}

Tensor combine(const Tensor& expert_out, const Routing& routing) {
  return scatter_add_rows(expert_out, routing.slot_token, routing.num_tokens, routing.slot_gate);
}

// The experts on `rows`, their time (and the rows they computed) added up while metering is on.
template <class Experts>
Tensor MoeLayer::metered(const std::shared_ptr<Meter>& meter, const Tensor& rows, Experts&& experts) {
  if (!metering_) return experts(rows);
  slots_received_ += rows.size(0);
  return meter_end(experts(meter_begin(rows, meter)), meter);
}

MoeForward MoeLayer::forward(const Tensor& x, const std::vector<int32_t>* token_ids, bool training, Generator* noise,
                             const RouterReplay& replay) {
  const Shape shape = x.shape();
  Tensor tokens = reshape(x, {-1, config_.d_model});
  RouteInputs in;
  in.x = tokens;
  in.token_ids = token_ids;
  in.training = training;
  in.noise = noise;
  in.replay_noise = replay.noise;
  in.replay_jitter = replay.jitter;
  in.capacity_group = config_.expert_group;
  bool any_bias = false;
  for (float b : bias_) any_bias = any_bias || b != 0.0f;
  in.bias = any_bias ? &bias_ : nullptr;

  MoeForward out;
  {
    StageTimer stage("router");
    out.routing = route(config_.router, router_, in);
    out.routing.devices =
        config_.device_groups > 0 ? config_.device_groups : (config_.expert_group ? config_.expert_group->size() : 1);
  }
  Tensor rows, expert_out, y;
  {
    StageTimer stage("dispatch");
    rows = dispatch(tokens, out.routing);
  }
  {
    StageTimer stage("experts");
    if (config_.expert_group && config_.expert_group->size() > 1) {
      expert_out = run_on_owners(rows, out.routing);
    } else {
      expert_out = metered(compute_meter_, rows,
                           [&](const Tensor& in) { return run_experts(experts_, in, out.routing.expert_offsets); });
    }
  }
  {
    StageTimer stage("combine");
    y = combine(expert_out, out.routing);
  }
  if (!shared_.empty()) {
    StageTimer stage("experts");
    for (const ExpertMlp& s : shared_) y = add(y, s.forward(tokens));
  }
  out.output = reshape(y, shape);
  return out;
}

// rows: this rank's kept slots, grouped by expert (global index order). Rank q receives the rows
// of its experts from every rank (source-major), reorders them expert-major (rows of expert j
// from rank 0, then rank 1, ...: the group batch's order), runs its experts, and sends each
// output row back to where its input came from.
Tensor MoeLayer::run_on_owners(const Tensor& rows, const Routing& routing) {
  const std::shared_ptr<dist::Communicator>& group = config_.expert_group;
  const int P = group->size();
  const int64_t local = static_cast<int64_t>(experts_.size());
  const std::vector<int64_t>& off = routing.expert_offsets;
  std::vector<int64_t> kept(static_cast<size_t>(P * local)), send_rows(P, 0), recv_rows(P, 0);
  for (int q = 0; q < P; ++q)
    for (int64_t j = 0; j < local; ++j) {
      kept[q * local + j] = off[q * local + j + 1] - off[q * local + j];
      send_rows[q] += kept[q * local + j];
    }
  // from[q * local + j]: rows rank q sends for local expert j.
  // Waits are charged from the first exchange to the last (the counts', then the rows' both ways).
  const Tensor metered_rows = metering_ ? meter_begin(rows, wait_meter_) : rows;
  const std::vector<int64_t> from = group->all_to_all(kept);
  for (int q = 0; q < P; ++q)
    for (int64_t j = 0; j < local; ++j) recv_rows[q] += from[q * local + j];
  Tensor received = all_to_all_rows(metered_rows, group, send_rows, recv_rows);

  // The received row order is (source, expert); the experts want (expert, source).
  std::vector<int64_t> source_start(P + 1, 0);
  for (int q = 0; q < P; ++q) source_start[q + 1] = source_start[q] + recv_rows[q];
  std::vector<int32_t> expert_major;
  std::vector<int64_t> offsets(local + 1, 0);
  for (int64_t j = 0; j < local; ++j) {
    for (int q = 0; q < P; ++q) {
      int64_t start = source_start[q];
      for (int64_t i = 0; i < j; ++i) start += from[q * local + i];
      for (int64_t r = 0; r < from[q * local + j]; ++r) expert_major.push_back(static_cast<int32_t>(start + r));
    }
    offsets[j + 1] = static_cast<int64_t>(expert_major.size());
  }
  const int64_t n = static_cast<int64_t>(expert_major.size());
  std::vector<int32_t> back(expert_major.size());
  for (int64_t i = 0; i < n; ++i) back[expert_major[i]] = static_cast<int32_t>(i);
  const Device device = rows.device();
  Tensor ordered = gather_rows(received, Tensor::from_vector(expert_major, {n}, device));
  Tensor out = metered(compute_meter_, ordered, [&](const Tensor& in) { return run_experts(experts_, in, offsets); });
  Tensor by_source = gather_rows(out, Tensor::from_vector(back, {n}, device));
  Tensor back_home = all_to_all_rows(by_source, group, recv_rows, send_rows);
  return metering_ ? meter_end(back_home, wait_meter_) : back_home;
}

ExpertLoad MoeLayer::expert_load() const {
  return {slots_received_, compute_meter_->total(), wait_meter_->read ? wait_meter_->total() : 0.0};
}

void MoeLayer::reset_expert_load() {
  slots_received_ = 0;
  compute_meter_->reset();
  wait_meter_->reset();
}

void MoeLayer::update_bias(const std::vector<int64_t>& step_counts) {
  if (config_.bias_update_rate <= 0) return;
  if (step_counts.size() != bias_.size()) throw std::invalid_argument("update_bias: one count per expert expected");
  double mean = 0;
  for (int64_t c : step_counts) mean += static_cast<double>(c) / static_cast<double>(step_counts.size());
  for (size_t i = 0; i < bias_.size(); ++i) {
    const double gap = mean - static_cast<double>(step_counts[i]);
    const double sign = gap > 0 ? 1.0 : (gap < 0 ? -1.0 : 0.0);
    bias_[i] += static_cast<float>(config_.bias_update_rate * sign);
  }
}

void MoeLayer::set_bias(const std::vector<float>& bias) {
  if (bias.size() != bias_.size()) throw std::invalid_argument("set_bias: one value per expert expected");
  bias_ = bias;
}

}  // namespace moe
