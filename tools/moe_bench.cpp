// moe-bench: times training steps of a config (forward, backward, clipping, AdamW) after
// warm-up: median step time, tokens/s, model GFLOP/s with the FLOP formula, share of a measured
// sgemm peak, peak resident memory, and a per-stage profile.
//
//   moe-bench --config FILE [--set key=value ...] [--warmup N] [--steps N] [--no-profile] [--json]
#include <boost/program_options.hpp>
#include <iostream>

#include "engine/engine.h"
#include "tools/cli.h"
#include "tools/lib/bench/bench.h"
#include "tools/lib/train/metrics_log.h"

namespace po = boost::program_options;

int main(int argc, char** argv) {
  std::string config_path;
  std::vector<std::string> overrides;
  bench::Options options;
  po::options_description opts("moe-bench: time training steps of a config (configs/bench/*.yaml)");
  opts.add_options()("help,h", "show this help")("config", po::value<std::string>(&config_path)->required(),
                                                 "YAML run configuration")(
      "set", po::value<std::vector<std::string>>(&overrides)->composing(), "override a key")(
      "warmup", po::value<int>(&options.warmup)->default_value(options.warmup), "untimed steps first")(
      "steps", po::value<int>(&options.steps)->default_value(options.steps), "timed steps")(
      "no-profile", "time the steps without the per-stage timers")("json", "one JSON line instead of the text");
  po::variables_map vm;
  if (auto status = tools::parse_flags(argc, argv, "moe-bench", opts, vm)) return *status;
  if (options.warmup < 0 || options.steps < 1) {
    std::cerr << "moe-bench: --warmup must be >= 0 and --steps >= 1\n";
    return 2;
  }
  options.profile = !vm.count("no-profile");
  try {
    const runconfig::RunConfig config = runconfig::load_run_config(
        config_path, overrides, [](std::string* why) { return engine::cuda_available(why); });
    const bench::Result r = bench::run(config, config_path, options);
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
    std::cout << "}}\n";
  } catch (const runconfig::ConfigError& e) {
    std::cerr << "moe-bench: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "moe-bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
