// The Trainer's side of checkpoints: what goes into one, applying one, resuming, saving with
// keep-last-K, and finding the latest good one in a run folder.
#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include "tools/lib/assemble/assemble.h"
#include "tools/lib/assemble/upcycle.h"
#include "tools/lib/hdf5/hdf5_file.h"
#include "tools/lib/train/expert_health.h"
#include "tools/lib/train/trainer.h"

namespace train {

namespace fs = std::filesystem;
namespace rc = runconfig;
using engine::Tensor;

namespace {

ckpt::NamedArray to_array(const std::string& name, const Tensor& t) {
  return {name, engine::Shape(t.shape()), t.to_float_vector()};
}

// A history from before the balancing strength was logged gets the values that were in force:
// they depend on the step only, and moe.* cannot change on resume.
ckpt::MetricsHistory with_strength(ckpt::MetricsHistory h, const rc::MoeConfig& moe) {
  std::map<std::string, std::vector<double>> coefficients;
  std::vector<double> bias_update_rate;
  for (int64_t step : h.step) {
    const rc::BalanceStrength s = rc::balance_strength(moe, step);
    for (const auto& [key, coef] : s.coefficients) coefficients[key].push_back(coef);
    bias_update_rate.push_back(s.bias_update_rate);
  }
  for (auto& [key, column] : coefficients) h.coefficients.emplace(key, std::move(column));  // keeps recorded ones
  if (h.bias_update_rate.empty()) h.bias_update_rate = std::move(bias_update_rate);
  return h;
}

std::vector<uint64_t> cursor_values(const data::LoaderCursor& c) {
  return {c.seed, c.offset, static_cast<uint64_t>(c.position)};
}

// Step number of a checkpoint file name "step_00000042.h5"; -1 for anything else.
int64_t step_of(const fs::path& p) {
  static const std::regex pattern("step_([0-9]{1,18})\\.h5");
  std::smatch m;
  const std::string name = p.filename().string();
  return std::regex_match(name, m, pattern) ? std::stoll(m[1]) : -1;
}

std::vector<std::pair<int64_t, fs::path>> checkpoints_in(const fs::path& dir) {
  std::vector<std::pair<int64_t, fs::path>> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (const int64_t s = step_of(entry.path()); s >= 0) out.emplace_back(s, entry.path());
  std::sort(out.begin(), out.end());
  return out;
}

// The config stored in a checkpoint, read from its attribute alone (not its tensors, which may
// be gigabytes); nullopt when the file cannot be read or its config cannot be parsed.
std::optional<rc::RunConfig> stored_config(const fs::path& file) {
  try {
    h5::File f(file.string(), h5::File::Mode::read);
    return rc::parse_run_config(f.read_string_attribute("/", "config"), file.string() + ":/config");
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// Refuses a run folder whose checkpoints belong to a run that differs from the resumed one in
// keys a resume may not change: the two runs' checkpoints would end up side by side, and
// keep-last-K or --resume latest would mix them up.
void check_folder_holds_same_run(const fs::path& dir, const rc::RunConfig& resumed, const std::string& path) {
  std::error_code ec;
  for (const auto& [step, file] : checkpoints_in(dir)) {
    if (fs::equivalent(file, path, ec)) continue;
    const std::optional<rc::RunConfig> other = stored_config(file);
    if (!other) continue;  // unreadable: latest_checkpoint skips it too
    std::string keys;
    for (const std::string& k : rc::resume_changes(*other, resumed).fixed) keys += (keys.empty() ? "" : ", ") + k;
    if (!keys.empty())
      throw ckpt::CheckpointError(dir.string() + " holds checkpoints of another model or data (" +
                                  file.filename().string() + " differs from " + path + " in " + keys +
                                  "); refusing to resume into it: use another --out");
  }
}

}  // namespace

std::string Trainer::checkpoint_dir() const { return (fs::path(config_.logging.out_dir) / "checkpoints").string(); }

ckpt::Checkpoint Trainer::snapshot(const std::string& diagnostic) const {
  ckpt::Checkpoint c;
  c.config_yaml = rc::to_yaml(config_);
  c.diagnostic = diagnostic;
  c.upcycled_from = upcycled_from_;
  for (const moe::NamedParam& p : model_->params().all()) c.params.push_back(to_array(p.name, p.tensor));
  c.optimizer_step = optimizer_->step_count();
  for (size_t i = 0; i < optimizer_->size(); ++i) {
    c.adam_m.push_back(to_array(optimizer_->params()[i].name, optimizer_->m(i)));
    c.adam_v.push_back(to_array(optimizer_->params()[i].name, optimizer_->v(i)));
  }
  gather_expert_tensors(groups_, c.params, c.adam_m, c.adam_v);  // rank 0 holds every expert
  const engine::AdamWConfig& o = optimizer_->config();
  c.hyperparameters = {
      {"lr", o.lr}, {"beta1", o.beta1}, {"beta2", o.beta2}, {"eps", o.eps}, {"weight_decay", o.weight_decay}};
  std::vector<moe::MoeLayer*> layers = model_->moe_layers();
  size_t next = 0;
  for (int64_t l = 0; l < model_->config().n_layers; ++l)
    if (moe::is_moe_layer(model_->config(), l)) c.router_bias[l] = layers.at(next++)->bias();
  c.step = step_;
  c.tokens_seen = tokens_seen_;
  c.lr = last_lr_;
  c.rng["router_noise"] = {model_->noise_generator().seed(), model_->noise_generator().offset()};
  c.rng["dropout"] = {model_->dropout_generator().seed(), model_->dropout_generator().offset()};
  c.loaders["train"] = cursor_values(train_data_->cursor());
  c.loaders["eval"] = cursor_values(eval_data_->cursor());
  c.metrics = metrics_.history();
  c.expert_last_active = health_->last_active();
  revival_->save(c);
  return c;
}

void Trainer::restore(const ckpt::Checkpoint& whole, const std::string& source) {
  if (whole.adam_m.size() != whole.params.size() || whole.adam_v.size() != whole.params.size())
    throw ckpt::CheckpointError(source + ": /optimizer: needs m and v for every tensor of /model");
  // Expert parallelism: this rank takes its own experts of the file, which holds them all (a
  // checkpoint of any world size or expert parallelism restores into any other).
  ckpt::Checkpoint local_part;
  const bool all_experts_here = groups_.expert_parallel == 1;
  if (!all_experts_here) {
    std::set<std::string> held;
    for (const moe::NamedParam& p : model_->params().all()) held.insert(p.name);
    local_part = whole;
    local_part.params.clear();
    local_part.adam_m.clear();
    local_part.adam_v.clear();
    for (size_t i = 0; i < whole.params.size(); ++i) {
      if (is_expert_tensor(whole.params[i].name) && !held.count(whole.params[i].name)) continue;
      local_part.params.push_back(whole.params[i]);
      local_part.adam_m.push_back(whole.adam_m[i]);
      local_part.adam_v.push_back(whole.adam_v[i]);
    }
  }
  const ckpt::Checkpoint& c = all_experts_here ? whole : local_part;
  assemble::load_model(*model_, c, source);
  std::map<std::string, size_t> by_name;
  for (size_t i = 0; i < c.params.size(); ++i) by_name[c.params[i].name] = i;
  for (size_t i = 0; i < optimizer_->size(); ++i) {
    const std::string& name = optimizer_->params()[i].name;
    const size_t k = by_name.at(name);  // load_model matched every parameter
    if (c.adam_m[k].name != name || c.adam_v[k].name != name)
      throw ckpt::CheckpointError(source + ": /optimizer: m and v do not list the same tensors as /model");
    assemble::load_tensor(c.adam_m[k], optimizer_->m(i), source, "/optimizer/m");
    assemble::load_tensor(c.adam_v[k], optimizer_->v(i), source, "/optimizer/v");
  }
  optimizer_->set_step_count(c.optimizer_step);
  for (const char* name : {"router_noise", "dropout"})
    if (!c.rng.count(name)) throw ckpt::CheckpointError(source + ": /state/rng/" + name + ": missing");
  model_->noise_generator().set_state(c.rng.at("router_noise")[0], c.rng.at("router_noise")[1]);
  model_->dropout_generator().set_state(c.rng.at("dropout")[0], c.rng.at("dropout")[1]);
  for (const char* name : {"train", "eval"})
    if (!c.loaders.count(name)) throw ckpt::CheckpointError(source + ": /state/loader/" + name + ": missing");
  auto cursor = [](const std::vector<uint64_t>& v) {
    return data::LoaderCursor{v[0], v[1], static_cast<int64_t>(v[2])};
  };
  revival_->restore(c, source);
  train_data_->restore(cursor(c.loaders.at("train")));
  eval_data_->restore(cursor(c.loaders.at("eval")));
  try {
    metrics_.set_history(with_strength(c.metrics, config_.moe));
  } catch (const std::exception& e) {
    throw ckpt::CheckpointError(source + ": /metrics: " + e.what());
  }
  try {
    health_->set_last_active(c.expert_last_active, c.step);
  } catch (const std::exception& e) {
    throw ckpt::CheckpointError(source + ": /state/expert_last_active: " + e.what());
  }
  step_ = start_step_ = c.step;
  upcycled_from_ = c.upcycled_from;
  tokens_seen_ = c.tokens_seen;
  last_lr_ = c.lr;
  elapsed_seconds_ = 0;
}

void Trainer::resume(const std::string& path) {
  const ckpt::Checkpoint c = ckpt::read_checkpoint(path);
  if (!c.diagnostic.empty())
    throw ckpt::CheckpointError(path + ": a diagnostic checkpoint (training stopped: " + c.diagnostic +
                                "); resume from the last regular checkpoint instead");
  const rc::RunConfig saved = assemble::saved_config(c, path, "checkpoint");
  const rc::ResumeChanges changes = rc::resume_changes(saved, config_);
  const std::vector<std::string>& fixed = changes.fixed;
  std::vector<std::string> changed;  // changed training keys are listed
  for (const std::string& k : changes.changed)
    if (k != "logging.out_dir") changed.push_back(k);
  if (!fixed.empty()) {
    std::string keys;
    for (const std::string& k : fixed) keys += (keys.empty() ? "" : ", ") + k;
    std::string hint;
    if (std::find(fixed.begin(), fixed.end(), "moe.device_groups") != fixed.end())
      hint = "; moe.losses.device_aux groups the experts into " + std::to_string(rc::device_groups(saved)) +
             " devices in the checkpoint and " + std::to_string(rc::device_groups(config_)) +
             " here: set moe.device_groups: " + std::to_string(rc::device_groups(saved)) + " to resume";
    throw ckpt::CheckpointError(path + ": refusing to resume: the config changes the model or its data (" + keys +
                                "); only training keys may change" + hint);
  }
  if (c.step > config_.training.steps)
    throw ckpt::CheckpointError(path + ": the checkpoint is at step " + std::to_string(c.step) +
                                ", beyond training.steps = " + std::to_string(config_.training.steps));
  if (writes_files()) check_folder_holds_same_run(checkpoint_dir(), saved, path);
  restore(c, path);
  resumed_ = true;
  last_checkpoint_ = path;
  last_checkpoint_step_ = c.step;
  // Later checkpoints of this folder belong to the run being replaced: keep them, out of the way.
  const fs::path superseded = fs::path(checkpoint_dir()) / "superseded";
  if (writes_files())
    for (const auto& [step, file] : checkpoints_in(checkpoint_dir())) {
      if (step <= c.step) continue;
      fs::create_directories(superseded);
      fs::rename(file, superseded / file.filename());
      progress_ << "moe-train: moved " << file.filename().string() << " (after the resumed step) to "
                << superseded.string() << "\n";
    }
  open_outputs();  // metrics files are rewritten from the restored history
  progress_ << "moe-train: resumed from " << path << " at step " << c.step;
  if (!changed.empty()) {
    progress_ << "; changed training keys:";
    for (const std::string& k : changed) progress_ << " " << k;
  }
  progress_ << std::endl;
}

void Trainer::upcycle(const std::string& dense_path, double noise_std) {
  if (step_ != 0) throw std::logic_error("Trainer::upcycle: only a fresh run is upcycled");
  const ckpt::Checkpoint dense = ckpt::read_checkpoint(dense_path);
  assemble::check_upcycle_source(config_, dense, dense_path);
  // The noise has a stream of its own, apart from the initialization's (training.seed).
  const assemble::UpcycleSummary s = assemble::upcycle(
      *model_, dense, dense_path, {noise_std, static_cast<uint64_t>(config_.training.seed) ^ 0x75706379636c65ull});
  upcycled_from_ = dense_path;
  progress_ << "moe-train: upcycled from " << dense_path << " (dense, step " << dense.step << "): " << s.experts
            << " experts in each of " << s.moe_layers << " MoE layers copied from its FFN";
  if (noise_std > 0) progress_ << " plus noise of std " << noise_std;
  progress_ << "; routers" << (config_.moe.num_shared_experts > 0 ? ", shared experts" : "")
            << " and optimizer fresh, from step 0" << std::endl;
}

std::string Trainer::save_checkpoint(const std::string& diagnostic) {
  const fs::path dir = checkpoint_dir();
  char name[64];
  std::snprintf(name, sizeof name, "%sstep_%08lld.h5", diagnostic.empty() ? "" : "diagnostic_",
                static_cast<long long>(step_));
  const std::string path = (dir / name).string();
  ckpt::Checkpoint state = snapshot(diagnostic);  // a collective with expert parallelism
  if (groups_.rank() != 0) {
    groups_.world->barrier();  // returns once rank 0 has written the file (see below)
    return path;
  }
  // Every rank returns only once the file is complete: a rank that went on (or exited, after a
  // stop) first could make mpirun end rank 0 in the middle of the write.
  struct Written {
    const ProcessGroups& g;
    ~Written() {
      try {
        if (g.distributed()) g.world->barrier();
      } catch (...) {  // MPI already failing: the write's own outcome is what gets reported
      }
    }
  } written{groups_};
  fs::create_directories(dir);
  std::error_code ec;
  static const std::regex leftover("(diagnostic_)?step_[0-9]+\\.h5\\.tmp");
  for (const auto& entry : fs::directory_iterator(dir, ec))  // left by a save that was killed
    if (std::regex_match(entry.path().filename().string(), leftover)) fs::remove(entry.path(), ec);
  ckpt::write_checkpoint(path, state);
  if (!diagnostic.empty()) return path;
  // Keep the newest K regular checkpoints; the one just written is the newest, so it stays.
  auto all = checkpoints_in(dir);
  const size_t keep = static_cast<size_t>(config_.checkpointing.keep_last);
  for (size_t i = 0; i + keep < all.size(); ++i)
    if (all[i].second != fs::path(path) && !fs::remove(all[i].second, ec))
      progress_ << "moe-train: could not delete old checkpoint " << all[i].second.string() << ": " << ec.message()
                << "\n";
  return path;
}

std::vector<int64_t> checkpoint_steps(const std::string& dir) {
  std::vector<int64_t> steps;
  for (const auto& [step, path] : checkpoints_in(dir)) steps.push_back(step);
  return steps;
}

std::string latest_checkpoint(const std::string& run_dir, std::vector<std::string>* skipped) {
  const fs::path dir = fs::path(run_dir) / "checkpoints";
  auto all = checkpoints_in(dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      const ckpt::Checkpoint c = ckpt::read_checkpoint(it->second.string());
      if (c.diagnostic.empty()) return it->second.string();
    } catch (const std::exception& e) {
      if (skipped) skipped->push_back(e.what());
    }
  }
  throw ckpt::CheckpointError(dir.string() + ": no complete checkpoint to resume from");
}

}  // namespace train
