// Run configuration: value ranges and cross-field rules, checked after parsing and overrides.
// Contract: detail::validate throws ConfigError for the first rule broken, naming the key, where
// it was set (or the closest set key/section, else the file), what is wrong and what is allowed.
// Rules are checked per section in schema order; file existence and the device come last.
#include <filesystem>
#include <sstream>
#include <vector>

#include "tools/lib/config/run_config.h"

namespace runconfig {
namespace detail {
namespace {

std::string num(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}
std::string num(int v) { return std::to_string(v); }
std::string num(std::int64_t v) { return std::to_string(v); }

class Checker {
 public:
  explicit Checker(const KeyLocations& where) : where_(where) {}

  // Fails with `KEY: WHAT (allowed: ALLOWED)` at the location of key (or of the first of also set).
  void require(bool ok, const std::string& key, const std::string& what, const std::string& allowed,
               std::vector<std::string> also = {}) const {
    if (ok) return;
    also.insert(also.begin(), key);
    throw ConfigError(error_message(where_.find(also), key, what, allowed));
  }
  template <class T>
  void at_least(T v, T lo, const std::string& key) const {
    require(v >= lo, key, "must be >= " + num(lo) + ", got " + num(v), ">= " + num(lo));
  }
  template <class T>
  void positive(T v, const std::string& key) const {
    require(v > 0, key, "must be > 0, got " + num(v), "> 0");
  }
  // lo <= v < hi, or lo <= v <= hi when closed, or lo < v < hi when open_low.
  void in_range(double v, double lo, double hi, bool closed_high, const std::string& key, bool open_low = false) const {
    const bool ok = (open_low ? v > lo : v >= lo) && (closed_high ? v <= hi : v < hi);
    const std::string range = (open_low ? "(" : "[") + num(lo) + ", " + num(hi) + (closed_high ? "]" : ")");
    require(ok, key, "must be in " + range + ", got " + num(v), range);
  }
  void files_exist(const std::vector<std::string>& files, const std::string& key) const {
    namespace fs = std::filesystem;
    for (const auto& f : files) {
      std::error_code ec;
      const fs::file_status st = fs::status(f, ec);
      // A folder is the likeliest mistake after a typo: say which of the two it is.
      require(!fs::is_directory(st), key, "'" + f + "' is a directory, not a file", "existing files");
      require(fs::exists(st), key, "file not found: '" + f + "'", "existing files");
      require(fs::is_regular_file(st), key, "'" + f + "' is not a regular file", "existing files");
    }
  }

 private:
  const KeyLocations& where_;
};

void check_model(const Checker& c, const ModelConfig& m) {
  c.positive(m.vocab_size, "model.vocab_size");
  c.positive(m.d_model, "model.d_model");
  c.positive(m.n_layers, "model.n_layers");
  c.positive(m.n_heads, "model.n_heads");
  c.require(m.d_model % m.n_heads == 0, "model.n_heads",
            "model.d_model (" + num(m.d_model) + ") is not divisible by model.n_heads (" + num(m.n_heads) + ")",
            "divisors of d_model", {"model.d_model"});
  if (m.position == PositionKind::rope) {
    c.require((m.d_model / m.n_heads) % 2 == 0, "model.position",
              "rope needs an even head size, d_model / n_heads = " + num(m.d_model / m.n_heads),
              "learned, or rope with an even d_model / n_heads");
  }
  c.positive(m.max_seq_len, "model.max_seq_len");
  c.positive(m.norm_eps, "model.norm_eps");
  c.in_range(m.dropout, 0.0, 1.0, false, "model.dropout");
  c.positive(m.d_ff, "model.d_ff");
  c.positive(m.init_std, "model.init_std");
  c.positive(m.embedding_init_std, "model.embedding_init_std");
}

// A device count must split the experts into equal contiguous blocks.
void check_device_groups(const Checker& c, const MoeConfig& e) {
  const int E = e.num_experts, D = e.device_groups;
  if (D == 0 || (D >= 1 && E % D == 0)) return;
  const std::string allowed = "0, " + divisor_list(E);
  c.require(
      false, "moe.device_groups",
      "must be 0 (as many devices as parallel.expert) or a divisor of moe.num_experts (" + num(E) + "), got " + num(D),
      allowed, {"moe.num_experts"});
}

// Revival re-draws a dead expert's router row too: a router without weights (hash) routes by
// token id, so a revived expert would receive exactly the tokens that starved it.
void check_revival(const Checker& c, const MoeConfig& e) {
  const RevivalConfig& r = e.revival;
  c.at_least(r.check_every, 0, "moe.revival.check_every");
  c.at_least(r.noise, 0.0, "moe.revival.noise");
  if (r.check_every == 0) return;
  const moe::RouterInfo& router = moe::router_info(e.router);
  c.require(router.weights != moe::RouterWeightKind::none, "moe.revival.check_every",
            std::string("router ") + router.key +
                " has no weights, so a revived expert would get the same tokens as the dead one: revival cannot help it",
            std::string("0 with router ") + router.key, {"moe.router"});
}

void check_moe(const Checker& c, const MoeConfig& e, const ModelConfig& m) {
  c.at_least(e.every_n, 1, "moe.every_n");
  c.at_least(e.first_dense, 0, "moe.first_dense");
  c.require(e.first_dense < m.n_layers, "moe.first_dense",
            "must be < model.n_layers (" + num(m.n_layers) + "), got " + num(e.first_dense),
            "0.." + num(m.n_layers - 1), {"model.n_layers"});
  c.at_least(e.num_experts, 1, "moe.num_experts");
  c.require(e.top_k >= 1 && e.top_k <= e.num_experts, "moe.top_k",
            "must be between 1 and moe.num_experts (" + num(e.num_experts) + "), got " + num(e.top_k),
            "1.." + num(e.num_experts), {"moe.num_experts"});
  const moe::RouterInfo& router = moe::router_info(e.router);
  const std::string top_k_rule = moe::check_top_k(router, e.top_k);
  c.require(top_k_rule.empty(), "moe.top_k", top_k_rule, "1", {"moe.router"});
  c.positive(e.d_expert, "moe.d_expert");
  c.at_least(e.num_shared_experts, 0, "moe.num_shared_experts");
  c.at_least(e.d_shared, 0, "moe.d_shared");
  const std::string capacity_rule = moe::check_capacity(router, e.capacity_factor);
  c.require(capacity_rule.empty(), "moe.capacity_factor", capacity_rule,
            std::string("> 0 with router ") + router.key, {"moe.router"});
  const moe::OptionProblem option =
      moe::check_routing_options(router, routing_options(e), e.num_experts, e.top_k);
  c.require(option.key.empty(), option.key, option.what, option.allowed, {"moe.router"});
  // Schedules are read non-negative; a loss is on when its schedule ever gives it a weight.
  for (const moe::LossInfo& loss : moe::balance_loss_infos()) {
    const std::string key = std::string("moe.losses.") + loss.key;
    const std::string rule = moe::check_loss(router, loss, e.losses.of(loss.key).peak());
    c.require(rule.empty(), key, rule, std::string("0 with router ") + router.key, {"moe.router"});
  }
  if (e.balance_scope == BalanceScope::global_batch)
    for (const char* key : {"importance", "load"})
      c.require(e.losses.of(key).peak() == 0.0, std::string("moe.losses.") + key,
                std::string(key) + " is CV^2 of a sum over the batch, which the global_batch scope does not gather; " +
                    "it is measured per micro-batch: use moe.balance_scope micro_batch with it",
                "0 with moe.balance_scope global_batch", {"moe.balance_scope"});
  check_device_groups(c, e);
  check_revival(c, e);
}

void check_parallel(const Checker& c, const ParallelConfig& p, const MoeConfig& e) {
  c.positive(p.expert, "parallel.expert");
  if (p.expert <= 1) return;
  c.require(e.enabled, "parallel.expert", "expert parallelism needs MoE layers (moe.enabled is false)", "1",
            {"moe.enabled"});
  c.require(e.revival.check_every == 0, "moe.revival.check_every",
            "dead-expert revival runs in one process or with data parallelism only; with parallel.expert = " +
                num(p.expert) + " the experts it would re-initialize live on other ranks",
            "0 with parallel.expert > 1", {"parallel.expert"});
  c.require(e.num_experts % p.expert == 0, "parallel.expert",
            "must divide moe.num_experts (" + num(e.num_experts) + "), got " + num(p.expert),
            "a divisor of moe.num_experts", {"moe.num_experts"});
}

void check_data(const Checker& c, const DataConfig& d, const ModelConfig& m) {
  c.at_least<std::int64_t>(d.seed, 0, "data.seed");
  c.at_least(d.num_domains, 1, "data.num_domains");
  c.in_range(d.concentration, 0.0, 1.0, true, "data.concentration");
  c.in_range(d.val_fraction, 0.0, 1.0, false, "data.val_fraction", true);
  if (d.kind == DataKind::text) {
    c.require(!d.paths.empty(), "data.paths", "data.kind text needs at least one file", "a non-empty list of files",
              {"data.kind"});
    c.require(m.vocab_size >= 256, "model.vocab_size",
              "data.kind text uses byte tokens, so the vocabulary needs 256 entries, got " + num(m.vocab_size),
              ">= 256 with data.kind text", {"data.kind"});
  }
  if (d.kind == DataKind::shards) {
    c.require(!d.train_shards.empty(), "data.train_shards", "data.kind shards needs at least one training shard",
              "a non-empty list of files", {"data.kind"});
    c.require(!d.val_shards.empty(), "data.val_shards", "data.kind shards needs at least one validation shard",
              "a non-empty list of files", {"data.kind"});
  }
}

void check_training(const Checker& c, const RunConfig& cfg) {
  const OptimizerConfig& o = cfg.optimizer;
  c.positive(o.lr, "optimizer.lr");
  c.in_range(o.beta1, 0.0, 1.0, false, "optimizer.beta1");
  c.in_range(o.beta2, 0.0, 1.0, false, "optimizer.beta2");
  c.positive(o.eps, "optimizer.eps");
  c.at_least(o.weight_decay, 0.0, "optimizer.weight_decay");

  const ScheduleConfig& s = cfg.schedule;
  c.at_least(s.warmup_steps, 0, "schedule.warmup_steps");
  c.in_range(s.min_lr_ratio, 0.0, 1.0, true, "schedule.min_lr_ratio");
  c.at_least(s.total_steps, 0, "schedule.total_steps");

  const TrainingConfig& t = cfg.training;
  c.positive(t.steps, "training.steps");
  c.positive(t.batch_size, "training.batch_size");
  c.positive(t.seq_len, "training.seq_len");
  c.require(t.seq_len <= cfg.model.max_seq_len, "training.seq_len",
            "must be <= model.max_seq_len (" + num(cfg.model.max_seq_len) + "), got " + num(t.seq_len),
            "1.." + num(cfg.model.max_seq_len), {"model.max_seq_len"});
  c.at_least(t.grad_accum, 1, "training.grad_accum");
  c.at_least(t.eval_every, 0, "training.eval_every");
  c.at_least<std::int64_t>(t.seed, 0, "training.seed");
  c.positive(t.eval_batches, "training.eval_batches");
  // A warm-up longer than the schedule would never reach the peak lr: almost surely a mistake.
  const int length = s.total_steps > 0 ? s.total_steps : t.steps;
  const std::string length_key = s.total_steps > 0 ? "schedule.total_steps" : "training.steps";
  c.require(
      s.warmup_steps <= length, "schedule.warmup_steps",
      "must not exceed the schedule's length (" + length_key + " = " + num(length) + "), got " + num(s.warmup_steps),
      "0.." + num(length), {length_key});

  c.at_least(cfg.logging.every, 1, "logging.every");
  c.at_least(cfg.logging.routing_trace_every, 0, "logging.routing_trace_every");
  c.require(!cfg.logging.out_dir.empty(), "logging.out_dir", "must not be empty", "a directory path");
  c.at_least(cfg.checkpointing.every, 0, "checkpointing.every");
  c.at_least(cfg.checkpointing.keep_last, 1, "checkpointing.keep_last");

  c.at_least(cfg.memory_limit, 0.0, "memory_limit");

  const DiagnosticsConfig& d = cfg.diagnostics;
  c.at_least(d.max_vio, 0.0, "diagnostics.max_vio");
  c.at_least(d.max_dead, 0, "diagnostics.max_dead");
  c.in_range(d.topk_share, 0.0, 1.0, true, "diagnostics.topk_share", true);
  c.in_range(d.dead_fraction, 0.0, 1.0, true, "diagnostics.dead_fraction");
  c.in_range(d.starved_fraction, 0.0, 1.0, true, "diagnostics.starved_fraction");
  c.at_least(d.device_imbalance, 1.0, "diagnostics.device_imbalance");
  c.at_least(d.idle_window, 1, "diagnostics.idle_window");
  c.at_least(d.vanishing_grad_norm, 0.0, "diagnostics.vanishing_grad_norm");
  c.require(d.dead_fraction <= d.starved_fraction, "diagnostics.dead_fraction",
            "must not exceed diagnostics.starved_fraction (" + num(d.starved_fraction) + ")", "0 .. starved_fraction",
            {"diagnostics.starved_fraction"});
}

}  // namespace

void validate(const RunConfig& cfg, const KeyLocations& where, const CudaProbe& cuda_available) {
  const Checker c(where);
  check_model(c, cfg.model);
  check_moe(c, cfg.moe, cfg.model);
  check_data(c, cfg.data, cfg.model);
  check_training(c, cfg);
  check_parallel(c, cfg.parallel, cfg.moe);
  if (cfg.data.kind == DataKind::text) c.files_exist(cfg.data.paths, "data.paths");
  if (cfg.data.kind == DataKind::shards) {
    c.files_exist(cfg.data.train_shards, "data.train_shards");
    c.files_exist(cfg.data.val_shards, "data.val_shards");
  }
  if (cfg.device == DeviceKind::cuda && cuda_available) {
    std::string reason;
    const bool ok = cuda_available(&reason);
    c.require(ok, "device", "no usable CUDA device" + (reason.empty() ? std::string() : ": " + reason), "cpu, cuda");
  }
}

}  // namespace detail

std::string divisor_list(std::int64_t n) {
  std::vector<std::int64_t> low, high;  // n's divisors up to and beyond sqrt(n)
  for (std::int64_t d = 1; d * d <= n; ++d)
    if (n % d == 0) {
      low.push_back(d);
      if (d != n / d) high.insert(high.begin(), n / d);
    }
  std::string list;
  for (const std::vector<std::int64_t>* part : {&low, &high})
    for (std::int64_t d : *part) list += (list.empty() ? "" : ", ") + std::to_string(d);
  return list;
}

}  // namespace runconfig
