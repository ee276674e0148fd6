// moe-bench: times training steps of a config (forward, backward, clipping, AdamW) after
// warm-up: median step time, tokens/s, model GFLOP/s with the FLOP formula, share of a measured
// sgemm peak, peak resident memory, and a per-stage profile.
//
//   moe-bench --config FILE [--set key=value ...] [--warmup N] [--steps N] [--no-profile] [--json]
//             [--hot-experts N [--hot-bias B]] [--checkpoint FILE] [--dense-baseline]
//   mpirun -np R moe-bench --config FILE --set parallel.expert=P ...   (rank 0 prints, with a
//   per-rank split of the step into compute, all-to-all, all-reduce and waiting)
// --dense-baseline: then the engine's dense step with the same active FLOPs (moe.enabled false,
// d_ff = k x d_expert + the shared experts' width), timed in alternation with the MoE step, and
// their ratio: what being MoE costs (tools/lib/bench/dense_baseline.h).
#include <boost/program_options.hpp>
#include <iostream>

#include "engine/dist/world.h"
#include "engine/engine.h"
#include "tools/cli.h"
#include "tools/lib/bench/bench.h"
#include "tools/lib/train/launch.h"
#include "tools/lib/train/metrics_log.h"

namespace po = boost::program_options;

int main(int argc, char** argv) {
  train::prepare_process(argv);
  std::string config_path;
  std::vector<std::string> overrides;
  bench::Options options;
  po::options_description opts("moe-bench: time training steps of a config (configs/bench/*.yaml)");
  opts.add_options()("help,h", "show this help")("config", po::value<std::string>(&config_path)->required(),
                                                 "YAML run configuration")(
      "set", po::value<std::vector<std::string>>(&overrides)->composing(), "override a key")(
      "warmup", po::value<int>(&options.warmup)->default_value(options.warmup), "untimed steps first")(
      "steps", po::value<int>(&options.steps)->default_value(options.steps), "timed steps")(
      "no-profile", "time the steps without the per-stage timers")("json", "one JSON line instead of the text")(
      "hot-experts", po::value<int64_t>(&options.hot_experts)->default_value(0),
      "hold the routing skewed: the first N experts of every MoE layer get the selection bias --hot-bias, so "
      "tokens pick them (what imbalance costs; tools/imbalance_bench.py)")(
      "hot-bias", po::value<double>(&options.hot_bias)->default_value(options.hot_bias),
      "the selection bias of the hot experts: 10 outweighs any score (every token picks them), smaller values "
      "only some tokens")("checkpoint", po::value<std::string>(&options.checkpoint),
                          "after the timed steps, save the model as a checkpoint to this file (for moe-diagnose --ep)")(
      "dense-baseline",
      "then time the dense model with the same active FLOPs (moe.enabled false, d_ff = k x d_expert + shared "
      "experts' width) against the MoE step, in alternation, and print MoE step / dense step (one process)");
  po::variables_map vm;
  if (auto status = tools::parse_flags(argc, argv, "moe-bench", opts, vm)) return *status;
  if (options.warmup < 0 || options.steps < 1) {
    std::cerr << "moe-bench: --warmup must be >= 0 and --steps >= 1\n";
    return 2;
  }
  if (options.hot_experts < 0 || options.hot_bias < 0) {
    std::cerr << "moe-bench: --hot-experts and --hot-bias must be >= 0\n";
    return 2;
  }
  options.profile = !vm.count("no-profile");
  options.dense_baseline = vm.count("dense-baseline") > 0;
  std::shared_ptr<engine::dist::Communicator> world;
  try {
    world = engine::dist::world();
    const runconfig::RunConfig config = runconfig::load_run_config(
        config_path, overrides, [](std::string* why) { return engine::cuda_available(why); });
    bench::Result r;
    {  // the process groups end before MPI does
      const train::ProcessGroups groups =
          train::ProcessGroups::make(world, config.parallel.expert, config.device == runconfig::DeviceKind::cuda);
      r = bench::run(config, config_path, options, groups);
    }
    const bool speaks = world->rank() == 0;
    world.reset();
    engine::dist::finalize();
    if (!speaks) return 0;
    if (!vm.count("json")) {
      bench::print(r, std::cout);
      return 0;
    }
    using train::json_number;
    std::cout << "{\"config\": \"" << config_path << "\", \"median_step_s\": " << json_number(r.median_step_s)
              << ", \"tokens_per_s\": " << json_number(r.tokens_per_s)
              << ", \"model_gflops\": " << json_number(r.model_gflops) << ", \"precision\": \"" << r.precision << "\""
              << ", \"sgemm_peak_gflops\": " << json_number(r.sgemm_peak_gflops)
              << ", \"peak_rss_mb\": " << json_number(r.peak_rss_mb) << ", \"stages_ms\": {";
    for (size_t i = 0; i < r.stages.size(); ++i)
      std::cout << (i ? ", " : "") << "\"" << r.stages[i].first << "\": " << json_number(1e3 * r.stages[i].second);
    std::cout << "}, \"ranks\": [";
    for (size_t q = 0; q < r.ranks.size(); ++q) {
      const bench::Result::RankTimes& t = r.ranks[q];
      std::cout << (q ? ", " : "") << "{\"step_ms\": " << json_number(1e3 * t.step)
                << ", \"compute_ms\": " << json_number(1e3 * t.compute)
                << ", \"all_to_all_ms\": " << json_number(1e3 * t.all_to_all)
                << ", \"all_reduce_ms\": " << json_number(1e3 * t.all_reduce)
                << ", \"wait_ms\": " << json_number(1e3 * t.wait) << "}";
    }
    std::cout << "], \"devices\": " << r.devices << ", \"device_imbalance\": " << json_number(r.device_imbalance)
              << ", \"expert_share\": " << json_number(r.expert_share)
              << ", \"wait_share\": " << json_number(r.wait_share) << ", \"layer_imbalance\": [";
    for (size_t l = 0; l < r.layer_imbalance.size(); ++l)
      std::cout << (l ? ", " : "") << json_number(r.layer_imbalance[l]);
    std::cout << "], \"device_slots\": [";
    for (size_t l = 0; l < r.device_slots.size(); ++l) {
      std::cout << (l ? ", " : "") << "[";
      for (size_t q = 0; q < r.device_slots[l].size(); ++q)
        std::cout << (q ? ", " : "") << json_number(r.device_slots[l][q]);
      std::cout << "]";
    }
    std::cout << "]";
    if (r.has_dense_baseline)
      std::cout << ", \"dense_baseline\": {\"d_ff\": " << r.dense.d_ff << ", \"steps\": " << r.dense.steps
                << ", \"moe_step_s\": " << json_number(r.dense.moe_step_s)
                << ", \"dense_step_s\": " << json_number(r.dense.dense_step_s)
                << ", \"dense_gflop_per_step\": " << json_number(r.dense.dense_flops_per_step / 1e9)
                << ", \"moe_over_dense\": " << json_number(r.dense.ratio) << "}";
    std::cout << "}\n";
  } catch (const std::exception& e) {
    const bool config_error = dynamic_cast<const runconfig::ConfigError*>(&e) != nullptr;
    std::cerr << "moe-bench: " << (world && world->size() > 1 ? "rank " + std::to_string(world->rank()) + ": " : "")
              << e.what() << "\n";
    if (world && world->size() > 1) engine::dist::abort_all(config_error ? 2 : 1);
    return config_error ? 2 : 1;
  }
  return 0;
}
