// moe-train: trains a MoE transformer from a YAML config.
//
//   moe-train --config FILE [--set key.path=value ...] [--out DIR]
#include <boost/program_options.hpp>
#include <iostream>

#include "engine/engine.h"
#include "tools/cli.h"
#include "tools/lib/trainer.h"

namespace po = boost::program_options;

int main(int argc, char** argv) {
  std::string config_path, out_dir;
  std::vector<std::string> overrides;
  po::options_description opts("moe-train: train a MoE transformer from a YAML config (keys: configs/README.md)");
  opts.add_options()("help,h", "show this help")("config", po::value<std::string>(&config_path)->required(),
                                                 "YAML run configuration")(
      "set", po::value<std::vector<std::string>>(&overrides)->composing(), "override a key: --set moe.top_k=1")(
      "out", po::value<std::string>(&out_dir), "output folder (default: logging.out_dir)");
  po::variables_map vm;
  if (auto status = tools::parse_flags(argc, argv, "moe-train", opts, vm)) return *status;
  try {
    if (!out_dir.empty()) overrides.push_back("logging.out_dir=" + out_dir);
    runconfig::RunConfig config = runconfig::load_run_config(
        config_path, overrides, [](std::string* why) { return engine::cuda_available(why); });
    train::Trainer trainer(config, std::cout);
    trainer.run();
  } catch (const runconfig::ConfigError& e) {
    std::cerr << "moe-train: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "moe-train: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
