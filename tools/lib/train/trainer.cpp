#include "tools/lib/train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <sstream>
#include <stdexcept>

#include "engine/core/parallel.h"
#include "tools/lib/assemble/assemble.h"
#include "tools/lib/fileio/fileio.h"
#include "tools/lib/train/expert_health.h"
#include "tools/lib/train/expert_load.h"

namespace train {

using namespace engine;
namespace rc = runconfig;

namespace {

// Norms, biases and embeddings are excluded from weight decay unless the config says otherwise.
bool decays(const std::string& name, const moe::NamedParam& p, const rc::OptimizerConfig& o) {
  const bool embedding = name.find("embedding") != std::string::npos;
  if (embedding) return o.decay_embeddings;
  if (!p.decay) return o.decay_norms_and_biases;
  return true;
}

std::vector<std::string> balance_term_names() {
  std::vector<std::string> names;
  for (const moe::BalanceLoss& bl : moe::balance_losses()) names.push_back(bl.name);
  return names;
}

assemble::MemoryEstimate checked_memory_estimate(const rc::RunConfig& config) {
  assemble::MemoryEstimate e = assemble::estimate_memory(config);
  assemble::check_memory(config, e, assemble::available_memory_bytes());
  return e;
}

// The config keys that name a run's training or validation data, for error messages.
std::string data_keys(const rc::DataConfig& d, bool validation) {
  switch (d.kind) {
    case rc::DataKind::synthetic:
      return "data.kind synthetic";
    case rc::DataKind::text: {
      std::ostringstream s;
      s << "data.paths" << (validation ? ", the last data.val_fraction = " : ", all but data.val_fraction = ")
        << d.val_fraction << " of each file";
      return s.str();
    }
    case rc::DataKind::shards:
      return validation && !d.val_shards.empty() ? "data.val_shards" : "data.train_shards";
  }
  return "data";
}

// A data source checked against the config before step 1: a validation split too short for one
// window would otherwise show only at the first evaluation, after the whole run has trained.
// Any problem is a ConfigError (the config and the data do not fit) naming the keys.
std::unique_ptr<data::TokenSource> checked_source(const rc::RunConfig& c, bool validation,
                                                  std::unique_ptr<data::TokenSource> given) {
  try {
    std::unique_ptr<data::TokenSource> source = given ? std::move(given) : assemble::data_source(c, validation);
    source->check_fits(c.training.seq_len);
    return source;
  } catch (const std::exception& e) {
    std::string why = e.what();
    if (why.rfind("data: ", 0) == 0) why = why.substr(6);  // the data library's own prefix
    throw rc::ConfigError(std::string(validation ? "validation" : "training") + " data (" +
                          data_keys(c.data, validation) + "): " + why +
                          ", with training.seq_len = " + std::to_string(c.training.seq_len) + "; nothing was trained");
  }
}

// The model with its experts spread over the expert group (expert parallelism).
moe::ModelConfig parallel_model_config(const rc::RunConfig& config, const ProcessGroups& groups) {
  moe::ModelConfig mc = assemble::model_config(config);
  if (groups.expert_parallel > 1) mc.moe.expert_group = groups.expert_group;
  if (mc.device.is_cuda() && groups.device.is_cuda()) mc.device = groups.device;  // this rank's GPU
  return mc;
}

const ProcessGroups& checked_groups(const rc::RunConfig& config, const ProcessGroups& groups) {
  if (config.parallel.expert != groups.expert_parallel)
    throw rc::ConfigError("parallel.expert = " + std::to_string(config.parallel.expert) +
                          ", but the process groups were made for " + std::to_string(groups.expert_parallel));
  return groups;
}

std::string format_strength(double v) {
  std::ostringstream out;
  out << std::scientific << std::setprecision(2) << v;
  return out.str();
}

std::string format_duration(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  std::ostringstream out;
  out << s / 60 << ":" << std::setw(2) << std::setfill('0') << s % 60;
  return out.str();
}

}  // namespace

Trainer::Trainer(const rc::RunConfig& config, std::ostream& progress, std::unique_ptr<data::TokenSource> train_source,
                 const ProcessGroups& groups)
    : config_(config),
      progress_(progress),
      groups_(checked_groups(config, groups)),
      memory_(checked_memory_estimate(config)),
      model_(std::make_unique<moe::TransformerLM>(parallel_model_config(config, groups))),
      metrics_(balance_term_names(), static_cast<int64_t>(model_->moe_layers().size()), config.moe.num_experts,
               groups_.size()) {
  for (int64_t l = 0; l < model_->config().n_layers; ++l)
    if (moe::is_moe_layer(model_->config(), l)) moe_blocks_.push_back(l);
  std::vector<ParamGroupEntry> param_groups;
  for (const moe::NamedParam& p : model_->params().all()) {
    param_groups.push_back({p.name, p.tensor, decays(p.name, p, config.optimizer)});
    params_.push_back(p.tensor);
  }
  health_ = std::make_unique<ExpertHealth>(model_->params().all(), moe_blocks_, config.moe.num_experts,
                                           config.diagnostics.idle_window);
  AdamWConfig opt;
  opt.lr = config.optimizer.lr;
  opt.beta1 = config.optimizer.beta1;
  opt.beta2 = config.optimizer.beta2;
  opt.eps = config.optimizer.eps;
  opt.weight_decay = config.optimizer.weight_decay;
  optimizer_ = std::make_unique<AdamW>(param_groups, opt);
  revival_ = std::make_unique<Revival>(config, *model_);
  schedule_.base_lr = config.optimizer.lr;
  schedule_.warmup_steps = config.schedule.warmup_steps;
  schedule_.total_steps = config.schedule.total_steps > 0 ? config.schedule.total_steps : config.training.steps;
  schedule_.decay = config.schedule.decay == rc::DecayKind::cosine ? LrSchedule::cosine : LrSchedule::constant;
  schedule_.min_lr_ratio = config.schedule.min_lr_ratio;
  schedule_.validate();
  train_data_ = checked_source(config, false, std::move(train_source));
  eval_data_ = checked_source(config, true, nullptr);
  if (groups_.distributed()) {  // rank r draws its rows of every batch and of every random draw
    const int64_t rank = groups_.rank(), ranks = groups_.size();
    train_data_->set_shard(rank, ranks);
    eval_data_->set_shard(rank, ranks);
    model_->noise_generator().set_shard(rank, ranks);
    model_->dropout_generator().set_shard(rank, ranks);
  }
  progress_ << "moe-train: " << model_->params().count_elements() << " parameters";
  if (groups_.distributed()) {
    const char* wait = std::getenv("OMP_WAIT_POLICY");
    const bool sleeping = wait && (std::string(wait) == "PASSIVE" || std::string(wait) == "passive");
    progress_ << " on rank 0 of " << groups_.size() << " (" << groups_.size() / groups_.expert_parallel
              << " copies of the experts, each over " << groups_.expert_parallel << " ranks; " << engine::num_threads()
              << " OpenMP threads per rank, " << (sleeping ? "waiting threads sleep" : "waiting threads spin") << ")";
  }
  progress_ << ", " << model_->moe_layers().size() << " MoE layers, memory estimate " << memory_.summary()
            << (config.logging.out_dir.empty() ? "" : ", writing " + config.logging.out_dir) << "\n";
}

bool Trainer::any_rank(bool flag) const {
  if (!groups_.distributed()) return flag;
  std::vector<int64_t> raised = {flag ? 1 : 0};
  groups_.world->all_reduce_sum(raised);
  return raised[0] > 0;
}

// The run folder is touched only once the run is known to be good: a fresh start, or after a
// checkpoint was checked and restored; a refused resume leaves the folder as it was.
void Trainer::open_outputs() {
  if (outputs_open_ || !writes_files()) return;
  const std::filesystem::path out(config_.logging.out_dir);
  if (!resumed_) {
    const auto existing = checkpoint_steps(checkpoint_dir());
    if (!existing.empty())
      throw ckpt::CheckpointError(checkpoint_dir() + " holds checkpoints of an earlier run (newest: step " +
                                  std::to_string(existing.back()) +
                                  "); continue it with --resume latest, or use another --out or delete them");
  }
  std::filesystem::create_directories(out);
  fileio::write_file((out / "config.yaml").string(), rc::to_yaml(config_));
  metrics_.open(config_.logging.out_dir);
  outputs_open_ = true;
}

Trainer::~Trainer() = default;

void Trainer::check_finite(const moe::ForwardResult& out) const {
  auto finite = [](const Tensor& t) {
    for (double v : t.to_vector())
      if (!std::isfinite(v)) return false;
    return true;
  };
  for (const moe::NamedParam& p : model_->params().all())
    if (!finite(p.tensor)) throw NonFiniteError("parameter " + p.name + " holds NaN or Inf");
  if (!finite(out.logits)) throw NonFiniteError("the logits hold NaN or Inf (parameters are finite)");
  if (!std::isfinite(out.ce.item())) throw NonFiniteError("the cross-entropy is not finite");
  for (const auto& [name, value] : out.terms)
    if (!std::isfinite(value)) throw NonFiniteError("balance term " + name + " is not finite");
  throw NonFiniteError("the loss is not finite");
}

void Trainer::check_finite_gradients() const {
  for (const moe::NamedParam& p : model_->params().all()) {
    const Tensor g = p.tensor.grad();
    if (!g.defined()) continue;
    for (double v : g.to_vector())
      if (!std::isfinite(v)) throw NonFiniteError("gradient of " + p.name + " holds NaN or Inf");
  }
  throw NonFiniteError("the gradient norm is not finite");
}

StepMetrics Trainer::step() {
  const auto start = std::chrono::steady_clock::now();
  const rc::TrainingConfig& t = config_.training;
  StepMetrics m;
  m.step = step_ + 1;
  m.lr = schedule_.lr_at(m.step);
  // The step's balancing strength, for its loss and for the bias update after it; a failed step
  // leaves it set, which the retry of the same step sets again.
  const rc::BalanceStrength strength = rc::balance_strength(config_.moe, m.step);
  assemble::set_balance_strength(*model_, strength);
  m.coefficients.insert(strength.coefficients.begin(), strength.coefficients.end());
  m.bias_update_rate = strength.bias_update_rate;
  std::vector<moe::MoeLayer*> layers = model_->moe_layers();
  // The expert load is measured where it is logged: on a GPU every reading synchronizes, and a
  // barrier before each exchange tells the wait for the slowest rank apart from the transfer.
  const bool measure = measure_every_step_ || is_log_step(m.step);
  for (moe::MoeLayer* layer : layers) {
    layer->reset_expert_load();
    layer->set_metering(measure);
  }
  if (groups_.expert_parallel > 1) groups_.expert_group->set_measure_wait(measure);
  m.counts.assign(layers.size(), std::vector<int64_t>(config_.moe.num_experts, 0));
  m.kept = m.counts;
  // A step that fails leaves the data and generators where it found them, so a diagnostic
  // checkpoint replays exactly the failing step.
  const data::LoaderCursor cursor = train_data_->cursor();
  const Generator noise = model_->noise_generator(), dropout = model_->dropout_generator();
  auto rewind = [&] {
    clear_tape();
    optimizer_->zero_grad();
    train_data_->restore(cursor);
    model_->noise_generator() = noise;
    model_->dropout_generator() = dropout;
  };
  // At log steps the collapse metrics come from what the routers already computed.
  std::vector<RoutingObserver> observers;
  if (is_log_step(m.step))
    for (size_t l = 0; l < layers.size(); ++l)
      observers.emplace_back(config_.moe.num_experts, layers[l]->config().router.top_k, domain_count());
  // Any failure here (a non-finite loss, a data or engine error) rewinds before it propagates,
  // so the trainer stays at the end of the last finished step and a checkpoint of it is sound.
  try {
    forward_backward(m, observers);
  } catch (...) {
    rewind();
    throw;
  }
  StageTimer optimizer_stage("optimizer");
  try {  // nothing is updated before optimizer_->step: up to there a failure can still rewind
    if (groups_.distributed()) average_gradients(model_->params().all(), groups_);
    if (!observers.empty()) {  // each expert's gradient as the backward left it, before clipping rescales it
      StageTimer diagnostics_stage("diagnostics");
      health_->measure_gradients(*groups_.expert_group);
    }
    m.grad_norm = groups_.distributed()
                      ? clip_global_grad_norm(model_->params().all(), groups_, config_.optimizer.grad_clip)
                      : clip_grad_norm(params_, config_.optimizer.grad_clip);
    if (!std::isfinite(m.grad_norm)) check_finite_gradients();  // throws NonFiniteError naming the tensor
    if (!observers.empty()) {
      StageTimer diagnostics_stage("diagnostics");
      const collapse::Thresholds thresholds = thresholds_from(config_.diagnostics);
      for (size_t l = 0; l < observers.size(); ++l) {
        observers[l].sum_over(*groups_.world);
        m.layers.push_back(observers[l].stats(moe_blocks_[l], thresholds, device_count()));
        // Expert similarity compares every expert's weights, which expert parallelism spreads.
        if (groups_.expert_parallel == 1) set_expert_similarity(m.layers.back(), *layers[l]);
      }
    }
  } catch (...) {
    rewind();
    throw;
  }
  optimizer_->step(m.lr);
  optimizer_->zero_grad();
  health_->record_activity(m.step, m.kept);
  if (!observers.empty()) {
    StageTimer diagnostics_stage("diagnostics");
    health_->measure_update(*groups_.expert_group);
    health_->fill(m.layers, m.step);
  }
  for (size_t l = 0; l < layers.size(); ++l) layers[l]->update_bias(m.counts[l]);
  for (const RevivalEvent& e : revival_->after_step(m.step, m.counts, *model_, *optimizer_)) {
    metrics_.record_revival(e);
    progress_ << "revival: step " << e.step << ", MoE layer " << e.layer << ", expert " << e.expert
              << (e.source < 0 ? " re-initialized" : " copied from expert " + std::to_string(e.source)) << std::endl;
  }
  step_ = m.step;
  last_lr_ = m.lr;
  const int64_t step_tokens = static_cast<int64_t>(t.batch_size) * t.seq_len * t.grad_accum * groups_.size();
  tokens_seen_ += step_tokens;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  elapsed_seconds_ += seconds;
  m.tokens_per_second = static_cast<double>(step_tokens) / seconds;
  if (!m.layers.empty()) gather_expert_load(m.layers, expert_loads(layers), *groups_.world, seconds);
  return m;
}

// The step's micro-batches: forward, balance terms, backward, and the step's metrics summed
// over the ranks. In the micro-batch balance scope each micro-batch goes backward at once. In
// the global-batch scope the terms need the step's counts over every micro-batch and rank, so
// all forwards come first (their graphs held: grad_accum micro-batches of activations), then
// the counts are summed and one backward runs over every micro-batch's loss.
void Trainer::forward_backward(StepMetrics& m, std::vector<RoutingObserver>& observers) {
  const rc::TrainingConfig& t = config_.training;
  const double micro = 1.0 / t.grad_accum;
  const bool global_scope = config_.moe.balance_scope == rc::BalanceScope::global_batch;
  std::vector<moe::ForwardResult> held;
  auto add_metrics = [&](const moe::ForwardResult& out, double loss) {
    m.loss += loss * micro;
    m.ce += out.ce.item() * micro;
    for (const auto& [name, value] : out.terms) m.terms[name] += value * micro;
  };
  for (int a = 0; a < t.grad_accum; ++a) {
    data::Batch batch = train_data_->next_batch(t.batch_size, t.seq_len);
    moe::ForwardResult out = model_->forward(batch.inputs, batch.targets, true, !global_scope);
    for (size_t l = 0; l < out.routings.size(); ++l) {
      const moe::Routing& r = out.routings[l];
      for (size_t e = 0; e < r.counts.size(); ++e) m.counts[l][e] += r.counts[e];
      for (size_t e = 0; e + 1 < r.expert_offsets.size() && e < m.kept[l].size(); ++e)
        m.kept[l][e] += r.expert_offsets[e + 1] - r.expert_offsets[e];
      m.dropped += out.routings[l].dropped;
      if (!observers.empty()) {
        StageTimer diagnostics_stage("diagnostics");
        observers[l].add(out.routings[l], batch.domains, t.seq_len);
      }
    }
    if (global_scope) {
      held.push_back(std::move(out));
      continue;
    }
    const double loss = out.loss.item();
    if (!std::isfinite(loss)) check_finite(out);  // throws NonFiniteError naming the tensor
    {
      StageTimer stage("backward");
      backward(scale(out.loss, micro));  // the step's gradient is the mean over micro-batches
    }
    add_metrics(out, loss);
  }
  // The step's counts over every rank: the bias update, the logs and the global balance scope.
  // The kept slots ride along: which experts computed anything, for the idle share.
  std::vector<int64_t> counts;
  for (const auto* table : {&m.counts, &m.kept})
    for (const auto& layer : *table) counts.insert(counts.end(), layer.begin(), layer.end());
  counts.push_back(m.dropped);
  groups_.world->all_reduce_sum(counts);
  size_t i = 0;
  for (auto* table : {&m.counts, &m.kept})
    for (auto& layer : *table)
      for (int64_t& c : layer) c = counts[i++];
  m.dropped = counts.back();
  if (global_scope) {
    const int64_t step_tokens = static_cast<int64_t>(t.batch_size) * t.seq_len * t.grad_accum * groups_.size();
    Tensor total;
    for (moe::ForwardResult& out : held) {
      model_->add_balance_terms(out, &m.counts, step_tokens);
      const double loss = out.loss.item();
      if (!std::isfinite(loss)) check_finite(out);
      add_metrics(out, loss);
      total = total.defined() ? add(total, scale(out.loss, micro)) : scale(out.loss, micro);
    }
    StageTimer stage("backward");
    backward(total);
  }
  if (groups_.distributed()) {  // the logged numbers are the whole batch's: the mean over ranks
    // Every rank sends every term (a rank may lack one, e.g. with no assignment of its own): the
    // term's mean over the ranks that have it.
    const std::vector<std::string> names = balance_term_names();
    std::vector<double> values = {m.loss, m.ce};
    for (const std::string& name : names) {
      const auto it = m.terms.find(name);
      values.push_back(it == m.terms.end() ? 0.0 : it->second);
      values.push_back(it == m.terms.end() ? 0.0 : 1.0);
    }
    groups_.world->all_reduce_sum(values);
    m.loss = values[0] / groups_.size();
    m.ce = values[1] / groups_.size();
    m.terms.clear();
    for (size_t i = 0; i < names.size(); ++i)
      if (values[3 + 2 * i] > 0) m.terms[names[i]] = values[2 + 2 * i] / values[3 + 2 * i];
  }
}

double Trainer::evaluate() {
  NoGradScope no_grad;
  // An evaluation that fails leaves the validation stream where it was, so a checkpoint saved
  // after the failure continues exactly like a run that never failed.
  const data::LoaderCursor cursor = eval_data_->cursor();
  try {
    double total = 0;
    for (int b = 0; b < config_.training.eval_batches; ++b) {
      data::Batch batch = eval_data_->next_batch(config_.training.batch_size, config_.training.seq_len);
      total += model_->forward(batch.inputs, batch.targets, false).ce.item();
    }
    std::vector<double> sum = {total / config_.training.eval_batches};
    groups_.world->all_reduce_sum(sum);  // every rank evaluated its rows: the mean over ranks
    return sum[0] / groups_.size();
  } catch (...) {
    eval_data_->restore(cursor);
    throw;
  }
}

void Trainer::log(const StepMetrics& m) {
  std::ostringstream line;
  line << "step " << m.step << "/" << config_.training.steps << " | loss " << std::fixed << std::setprecision(4)
       << m.loss << " ce " << m.ce;
  for (const auto& [name, value] : m.terms) line << " " << name << " " << std::setprecision(4) << value;
  // A scheduled strength is shown as it changes; a constant one is in config.yaml.
  std::string scheduled;
  for (const auto& [name, coef] : m.coefficients)
    if (!config_.moe.losses.of(name).is_constant()) scheduled += " " + name + " " + format_strength(coef);
  if (!config_.moe.bias_update_rate.is_constant())
    scheduled += " bias_update_rate " + format_strength(m.bias_update_rate);
  if (!scheduled.empty()) line << " | scheduled" << scheduled;
  const double eta = elapsed_seconds_ / static_cast<double>(m.step - start_step_) * (config_.training.steps - m.step);
  line << " | lr " << std::scientific << std::setprecision(2) << m.lr << std::fixed << std::setprecision(0) << " | "
       << m.tokens_per_second << " tok/s | ETA " << format_duration(eta);
  progress_ << line.str() << std::endl;  // flushed: progress shows up in redirected logs too
  warn_on_collapse(m);
  metrics_.record_step(m);
}

bool Trainer::is_log_step(int64_t step) const {
  return step == 1 || step % config_.logging.every == 0 || step == config_.training.steps;
}

// The devices the experts are grouped into for the device metrics: as device_aux groups them,
// moe.device_groups or else the expert-parallel ranks.
int64_t Trainer::device_count() const { return rc::device_groups(config_); }

int64_t Trainer::domain_count() const {
  return config_.data.kind == rc::DataKind::synthetic ? config_.data.num_domains : 0;
}

// One line when a layer newly crosses a threshold (or crosses a different set of them), so a
// collapse that persists is reported once, not at every log step.
void Trainer::warn_on_collapse(const StepMetrics& m) {
  if (!config_.diagnostics.warnings) return;
  const collapse::Thresholds t = thresholds_from(config_.diagnostics);
  warned_.resize(m.layers.size(), 0);
  for (size_t l = 0; l < m.layers.size(); ++l) {
    const collapse::LayerStats& s = m.layers[l];
    const int crossed = collapse::crossed_thresholds(s, t);
    if (crossed != 0 && crossed != warned_[l])
      progress_ << "warning: step " << m.step << ", MoE layer " << l << " (block " << s.block
                << "): " << collapse::live_warning(s, t) << std::endl;
    warned_[l] = crossed;
  }
}

void Trainer::start_outputs() {
  try {
    open_outputs();
  } catch (const fileio::WriteError& e) {
    throw OutputError(std::string(e.what()) + "; training did not start");
  } catch (const std::filesystem::filesystem_error& e) {  // the run folder cannot be created
    throw OutputError(std::string(e.what()) + "; training did not start");
  }
}

RunEnd Trainer::run(const std::atomic<bool>* stop) {
  start_outputs();
  const rc::TrainingConfig& t = config_.training;
  const int every = config_.checkpointing.every;
  record_routing_trace();  // step 0's routing (an upcycled run's first), or none
  while (step_ < t.steps) {
    StepMetrics m;
    try {
      m = step();
    } catch (const NonFiniteError& e) {
      if (groups_.distributed()) throw;  // a save is collective: the other ranks are not here
      std::string saved;
      if (!config_.logging.out_dir.empty()) {
        try {
          saved = "; diagnostic checkpoint (state before that step): " + save_checkpoint(e.what());
        } catch (const std::exception& save_error) {
          saved = std::string("; the diagnostic checkpoint could not be saved: ") + save_error.what();
        }
      }
      throw NonFiniteError("training stopped at step " + std::to_string(step_ + 1) + ": " + e.what() + saved);
    } catch (const std::exception& e) {
      if (groups_.distributed()) throw;
      throw std::runtime_error(stopped_by_error("in step " + std::to_string(step_ + 1), e.what()));
    }
    // A file that cannot be written (a full disk) stops training at once, saying how to go on;
    // any other error saves the last finished step first.
    try {
      if (is_log_step(m.step)) log(m);
      record_routing_trace();
      if ((t.eval_every > 0 && m.step % t.eval_every == 0) || m.step == t.steps) {
        const double loss = evaluate();
        progress_ << "eval at step " << step_ << " | loss " << std::fixed << std::setprecision(4) << loss
                  << " perplexity " << std::setprecision(2) << std::exp(loss) << std::endl;
        metrics_.record_eval(step_, loss);
      }
      // Every rank stops after the same step, however the signal reached them.
      const bool stopping = any_rank(stop && stop->load());
      if (!config_.logging.out_dir.empty() && ((every > 0 && m.step % every == 0) || m.step == t.steps || stopping)) {
        last_checkpoint_ = save_checkpoint();  // before printing: a failed save prints no "checkpoint:"
        last_checkpoint_step_ = step_;
        progress_ << "checkpoint: " << last_checkpoint_ << std::endl;
      }
      if (stopping) return step_ >= t.steps ? RunEnd::finished : RunEnd::stopped;
    } catch (const fileio::WriteError& e) {
      throw OutputError(stopped_writing(e.what()));
    } catch (const ckpt::CheckpointError& e) {
      throw OutputError(stopped_writing(e.what()));
    } catch (const std::filesystem::filesystem_error& e) {
      throw OutputError(stopped_writing(e.what()));
    } catch (const std::exception& e) {
      if (groups_.distributed()) throw;
      throw std::runtime_error(stopped_by_error("after step " + std::to_string(step_), e.what()));
    }
  }
  return RunEnd::finished;
}

std::string Trainer::stopped_writing(const std::string& what) const {
  std::string out = "training stopped after step " + std::to_string(step_) + ": " + what + "; ";
  try {
    // latest_checkpoint has read and verified the file; its name is step_NNNNNNNN.h5.
    const std::string last = latest_checkpoint(config_.logging.out_dir);
    const std::string step = std::filesystem::path(last).stem().string().substr(5);
    out += "the last good checkpoint is " + last + " (step " + std::to_string(std::stoll(step)) +
           "): make room, then continue with --resume latest (or --resume " + last + ")";
  } catch (const std::exception&) {
    out += "no checkpoint was saved: make room, then start again";
  }
  return out;
}

// An error once training has begun must not lose the steps since the last checkpoint: the
// trainer is at the end of its last finished step (a failed step or evaluation rewinds), so
// that state is saved as a regular, resumable checkpoint and the message says where it is.
std::string Trainer::stopped_by_error(const std::string& where, const std::string& what) {
  std::string message = "training stopped by an error " + where + ": " + what;
  if (config_.logging.out_dir.empty()) return message + "; no output folder, nothing saved";
  if (step_ == last_checkpoint_step_)
    return message + (last_checkpoint_.empty() ? "; no step had finished, nothing to save"
                                               : "; no step had finished since the checkpoint " + last_checkpoint_ +
                                                     ", continue with --resume " + last_checkpoint_);
  try {
    const std::string path = save_checkpoint();
    return message + "; saved the state after step " + std::to_string(step_) + " to " + path +
           ", continue from it with --resume latest";
  } catch (const std::exception& e) {
    return message + "; saving a checkpoint of step " + std::to_string(step_) + " failed too (" + e.what() + ")" +
           (last_checkpoint_.empty() ? "; no earlier checkpoint of this run"
                                     : "; the last good checkpoint is " + last_checkpoint_);
  }
}

}  // namespace train
