#include "tools/lib/bench/bench.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "engine/engine.h"
#include "tools/lib/assemble/assemble.h"
#include "tools/lib/collapse/devices.h"
#include "tools/lib/collapse/metrics.h"
#include "tools/lib/train/expert_load.h"
#include "tools/lib/train/trainer.h"

namespace bench {

namespace rc = runconfig;
using Clock = std::chrono::steady_clock;

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // Linux reports KiB
}

double training_flops(const rc::RunConfig& c, std::string* formula) {
  const double d = c.model.d_model, T = c.training.seq_len, V = c.model.vocab_size, L = c.model.n_layers;
  const double E = c.moe.num_experts, k = c.moe.top_k, de = c.moe.d_expert, dff = c.model.d_ff;
  const double mats = c.model.activation == rc::Activation::gelu ? 2 : 3;  // swiglu has a third matrix
  moe::ModelConfig mc = assemble::model_config(c);
  double moe_layers = 0;
  for (int64_t l = 0; l < mc.n_layers; ++l) moe_layers += moe::is_moe_layer(mc, l) ? 1 : 0;
  const double shared = c.moe.num_shared_experts * (c.moe.d_shared > 0 ? c.moe.d_shared : de);
  // Per token, forward: 2 FLOPs per multiply-add.
  const double attention = L * (2 * 4 * d * d + 2 * 2 * T * d / 2);  // qkv + proj; QK^T and AV, causal half
  const double moe = moe_layers * (2 * d * E + 2 * mats * d * (k * de + shared));
  const double dense = (L - moe_layers) * 2 * mats * d * dff;
  const double head = 2 * d * V;
  const double per_token = attention + moe + dense + head;
  if (formula)
    *formula = "3 x tokens x [L(8d^2 + 2Td) + L_moe(2dE + 2*" + std::to_string(static_cast<int>(mats)) +
               "*d(k d_expert + shared)) + L_dense(2*" + std::to_string(static_cast<int>(mats)) + "*d d_ff) + 2dV]";
  return 3.0 * per_token * c.training.batch_size * T * c.training.grad_accum;
}

namespace {

void hold_routing_skewed(const rc::RunConfig& config, const std::vector<moe::MoeLayer*>& layers, const Options& o) {
  if (o.hot_experts > config.moe.num_experts)
    throw rc::ConfigError("--hot-experts " + std::to_string(o.hot_experts) + ": the model has only " +
                          std::to_string(config.moe.num_experts) + " experts");
  if (config.moe.bias_update_rate.peak() > 0)
    throw rc::ConfigError(
        "--hot-experts holds the routing skewed with a fixed selection bias; "
        "moe.bias_update_rate must be 0, got " +
        rc::to_string(config.moe.bias_update_rate));
  if (config.moe.router == rc::RouterKind::expert_choice || config.moe.router == rc::RouterKind::hash)
    throw rc::ConfigError(std::string("--hot-experts: the ") + rc::to_string(config.moe.router) +
                          " router does not select with the loss-free bias; use a top-k router");
  std::vector<float> bias(static_cast<size_t>(config.moe.num_experts), 0.0f);
  for (int64_t e = 0; e < o.hot_experts; ++e) bias[static_cast<size_t>(e)] = static_cast<float>(o.hot_bias);
  for (moe::MoeLayer* layer : layers) layer->set_bias(bias);
}

// Every rank's expert load of the timed steps (sums, and their total seconds), per step and
// grouped by device (expert-group member).
void add_device_times(Result& r, const std::vector<moe::ExpertLoad>& load, const train::ProcessGroups& groups,
                      double seconds, int steps) {
  std::vector<collapse::LayerStats> stats(load.size());
  train::gather_expert_load(stats, load, *groups.world, seconds);
  r.devices = groups.expert_parallel;
  for (const collapse::LayerStats& s : stats) {
    std::vector<double> slots(static_cast<size_t>(r.devices), 0.0);
    for (size_t q = 0; q < s.rank_slots.size(); ++q)
      slots[q % static_cast<size_t>(r.devices)] += s.rank_slots[q] / steps;
    r.layer_imbalance.push_back(collapse::device_imbalance(slots));
    r.device_slots.push_back(std::move(slots));
    r.expert_share += s.compute_share;
    if (!std::isnan(s.wait_share)) r.wait_share += s.wait_share;  // NaN: one process
  }
  r.device_imbalance = collapse::combined_imbalance(r.device_slots);
}

// The engine's own n^3 product at the run's precision on the run's device: the ceiling its GEMMs
// could reach. n = 1024 on the CPU; a GPU needs 4096 to be kept busy (at 1024 a bf16 product
// takes microseconds and launch overhead would set the "peak").
double measure_matmul_peak(engine::MatmulPrecision precision, engine::Device device) {
  engine::NoGradScope no_grad;
  engine::MatmulPrecisionScope scope(precision);
  engine::Generator gen(1);
  const int64_t n = device.is_cuda() ? 4096 : 1024;
  const engine::Tensor a = engine::randn({n, n}, gen, 0.0, 1.0, engine::DType::f32, device);
  const engine::Tensor b = engine::randn({n, n}, gen, 0.0, 1.0, engine::DType::f32, device);
  double best = 1e30;
  for (int i = 0; i < 6; ++i) {
    engine::synchronize(device);
    const auto start = Clock::now();
    engine::Tensor c = engine::matmul(a, b);
    engine::synchronize(device);  // the GPU's queue: the product, not its launch
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    if (i > 0) best = std::min(best, s);  // the first call builds the primitive
  }
  return 2.0 * n * n * n / best / 1e9;
}
}  // namespace

Result run(const rc::RunConfig& config_in, const std::string& name, const Options& o,
           const train::ProcessGroups& groups) {
  rc::RunConfig config = config_in;
  config.logging.out_dir.clear();  // no files, no checkpoints: the step alone is timed
  // The dense baseline's alternation takes `steps` more MoE steps; the schedule covers them all.
  config.training.steps = std::max(config.training.steps, o.warmup + o.steps * (o.dense_baseline ? 2 : 1));
  if (config.schedule.warmup_steps > config.training.steps) config.schedule.warmup_steps = config.training.steps;
  config.diagnostics.warnings = false;
  if (o.dense_baseline && groups.distributed())
    throw rc::ConfigError("--dense-baseline times one process; run it without mpirun");
  if (o.dense_baseline) dense_equivalent(config);  // refuse a config without a dense twin before timing
  Result r;
  r.config_name = name;
  r.tokens_per_step = static_cast<int64_t>(config.training.batch_size) * config.training.seq_len *
                      config.training.grad_accum * groups.size();
  r.flops_per_step = training_flops(config, &r.flop_formula) * groups.size();
  r.precision = rc::to_string(config.precision);
  const engine::Device device = assemble::model_config(config).device;
  r.sgemm_peak_gflops = measure_matmul_peak(
      config.precision == rc::PrecisionKind::bf16 ? engine::MatmulPrecision::bf16 : engine::MatmulPrecision::f32,
      device);
  if (groups.distributed()) {  // every rank measured at once: the machine's peak is their sum
    std::vector<double> peak = {r.sgemm_peak_gflops};
    groups.world->all_reduce_sum(peak);
    r.sgemm_peak_gflops = peak[0];
  }
  std::ostringstream quiet;
  train::Trainer trainer(config, quiet, nullptr, groups);
  trainer.measure_expert_load_every_step(true);
  const std::vector<moe::MoeLayer*> layers = trainer.model().moe_layers();
  if (o.hot_experts > 0) hold_routing_skewed(config, layers, o);
  for (int s = 0; s < o.warmup; ++s) trainer.step();
  engine::synchronize(device);  // no warm-up work left in the first timed step
  // A profile splits every collective's waiting from its transfer; the expert group's waits are
  // measured in any case (the trainer turns them on at every step here), for the device numbers.
  std::vector<bool> measured_before;
  const auto comms = {groups.world, groups.expert_group, groups.expert_replicas};
  for (const auto& comm : comms) {
    measured_before.push_back(comm->measure_wait());
    if (o.profile && groups.distributed()) comm->set_measure_wait(true);
  }
  engine::reset_stage_times();
  engine::set_profiling(o.profile);
  std::vector<moe::ExpertLoad> load(layers.size());
  for (int s = 0; s < o.steps; ++s) {
    const auto start = Clock::now();
    trainer.step();
    engine::synchronize(device);  // on a GPU: the step's work, not only its launches
    r.step_seconds.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    for (size_t l = 0; l < layers.size(); ++l) {  // the step's: each step starts its layers afresh
      const moe::ExpertLoad step_load = layers[l]->expert_load();
      load[l].slots += step_load.slots;
      load[l].compute_seconds += step_load.compute_seconds;
      load[l].wait_seconds += step_load.wait_seconds;
    }
  }
  engine::set_profiling(false);
  if (!o.checkpoint.empty()) {
    ckpt::Checkpoint c = trainer.snapshot();  // a collective: rank 0 gathers the experts
    // The steps wrote no files (out_dir cleared); the saved config names the checkpoint's folder,
    // so the file reads back as any run's.
    rc::RunConfig saved = config;
    saved.logging.out_dir = std::filesystem::absolute(o.checkpoint).parent_path().string();
    c.config_yaml = rc::to_yaml(saved);
    std::string failed;
    if (groups.rank() == 0) try {
        ckpt::write_checkpoint(o.checkpoint, c);
      } catch (const std::exception& e) {
        failed = e.what();
      }
    failed = groups.world->broadcast(failed, 0);  // every rank learns whether the save worked
    if (!failed.empty()) throw std::runtime_error("--checkpoint: " + failed);
  }
  std::vector<double> sorted = r.step_seconds;
  std::sort(sorted.begin(), sorted.end());
  r.median_step_s = sorted[sorted.size() / 2];
  r.tokens_per_s = r.tokens_per_step / r.median_step_s;
  r.model_gflops = r.flops_per_step / r.median_step_s / 1e9;
  double total = 0, staged = 0;
  for (double s : r.step_seconds) total += s;
  for (const auto& [stage, seconds] : engine::stage_times()) {
    r.stages.emplace_back(stage, seconds / o.steps);
    staged += seconds;
  }
  if (o.profile) r.stages.emplace_back("other", std::max(0.0, total - staged) / o.steps);
  r.peak_rss_mb = peak_rss_mb();
  {
    size_t i = 0;
    for (const auto& comm : comms) comm->set_measure_wait(measured_before[i++]);
  }
  add_device_times(r, load, groups, total, o.steps);
  if (o.dense_baseline) {  // after the peak RSS: the dense model's memory is not the MoE step's
    r.dense = time_dense_baseline(trainer, config, o.warmup, o.steps);
    r.has_dense_baseline = true;
  }
  if (groups.distributed()) {
    Result::RankTimes mine;
    mine.step = total / o.steps;
    for (const auto& [stage, seconds] : r.stages) {
      if (stage == "all_to_all") mine.all_to_all = seconds;
      if (stage == "all_reduce") mine.all_reduce = seconds;
      if (stage == "wait") mine.wait = seconds;
    }
    mine.compute = std::max(0.0, mine.step - mine.all_to_all - mine.all_reduce - mine.wait);
    const std::vector<double> all = groups.world->all_gather(
        std::vector<double>{mine.step, mine.compute, mine.all_to_all, mine.all_reduce, mine.wait});
    for (size_t q = 0; q + 4 < all.size(); q += 5)
      r.ranks.push_back({all[q], all[q + 1], all[q + 2], all[q + 3], all[q + 4]});
  }
  return r;
}

void print(const Result& r, std::ostream& out) {
  char line[512];
  std::snprintf(line, sizeof line,
                "%s (%s): median step %.2f ms over %zu steps, %.0f tokens/s, %.1f model GFLOP/s = %.0f%% of the "
                "measured %s matmul peak (%.1f GFLOP/s), peak RSS %.0f MB\n",
                r.config_name.c_str(), r.precision.c_str(), 1e3 * r.median_step_s, r.step_seconds.size(),
                r.tokens_per_s, r.model_gflops, 100 * r.model_gflops / r.sgemm_peak_gflops, r.precision.c_str(),
                r.sgemm_peak_gflops, r.peak_rss_mb);
  out << line << "  model FLOPs per step: " << r.flop_formula << " = " << r.flops_per_step / 1e9 << " GFLOP\n";
  if (!r.ranks.empty()) {
    out << "  per rank (mean per step, ms; wait = idle until the slowest rank reaches the collective):\n"
        << "    rank     step  compute  all-to-all  all-reduce     wait\n";
    for (size_t q = 0; q < r.ranks.size(); ++q) {
      const Result::RankTimes& t = r.ranks[q];
      std::snprintf(line, sizeof line, "    %4zu %8.2f %8.2f %11.2f %11.2f %8.2f\n", q, 1e3 * t.step, 1e3 * t.compute,
                    1e3 * t.all_to_all, 1e3 * t.all_reduce, 1e3 * t.wait);
      out << line;
    }
  }
  std::snprintf(line, sizeof line,
                "  devices: %lld; device imbalance %.2f (busiest device's slots over the mean, summed over layers); "
                "expert compute %.1f%% and all-to-all waiting %.1f%% of the step\n",
                static_cast<long long>(r.devices), r.device_imbalance, 100 * r.expert_share, 100 * r.wait_share);
  out << line;
  for (size_t l = 0; l < r.device_slots.size() && r.devices > 1; ++l) {
    out << "    MoE layer " << l << ": imbalance " << collapse::format_number(r.layer_imbalance[l], "%.2f")
        << ", slots per device per step";
    for (double v : r.device_slots[l]) out << " " << collapse::format_number(v, "%.0f");
    out << "\n";
  }
  if (r.has_dense_baseline) {
    const DenseBaseline& d = r.dense;
    std::snprintf(line, sizeof line,
                  "  dense baseline (moe.enabled false, d_ff %d = the MoE layers' active width, %.3g GFLOP per step): "
                  "median step %.2f ms against MoE %.2f ms, timed in alternation over %d steps each: MoE / dense = "
                  "%.2fx\n",
                  d.d_ff, d.dense_flops_per_step / 1e9, 1e3 * d.dense_step_s, 1e3 * d.moe_step_s, d.steps, d.ratio);
    out << line;
  }
  if (r.stages.empty()) return;
  double total = 0;
  for (const auto& [stage, s] : r.stages) total += s;
  out << "  profile (mean per step):\n";
  std::vector<std::pair<std::string, double>> by_time = r.stages;
  std::stable_sort(by_time.begin(), by_time.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  for (const auto& [stage, s] : by_time) {
    std::snprintf(line, sizeof line, "    %-12s %8.2f ms  %5.1f%%\n", stage.c_str(), 1e3 * s, 100 * s / total);
    out << line;
  }
}

}  // namespace bench
