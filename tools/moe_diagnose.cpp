// moe-diagnose: expert-collapse diagnostics of a checkpoint.
//
//   moe-diagnose CHECKPOINT [--data CONFIG_OR_PATH] [--batches N] [--json OUT] [--report OUT.html]
//                [--compare OTHER_CHECKPOINT] [--ep N]
//
// Prints a per-layer table, the spread of each metric across layers, the predicted slowdown of
// each layer's expert work on N expert-parallel ranks (--ep N, and 2, 4, 8 where they divide E)
// and a verdict per layer.
// Exit status: 0 when every layer is healthy, 3 when any is imbalanced, collapsing or collapsed
// (so scripts can use it as an alarm), 2 on errors (bad flags, bad file, bad data).
#include <boost/program_options.hpp>
#include <iostream>
#include <sstream>

#include "tools/cli.h"
#include "tools/lib/diagnose/diagnose.h"
#include "tools/lib/diagnose/report_html.h"
#include "tools/lib/fileio/fileio.h"

namespace po = boost::program_options;

int main(int argc, char** argv) {
  std::string checkpoint, json_path, report_path;
  diagnose::Options options;
  po::options_description opts("moe-diagnose: is each MoE layer balanced, imbalanced, collapsing or collapsed?");
  opts.add_options()("help,h", "show this help")(
      "data", po::value<std::string>(&options.data),
      "evaluation data: a YAML config (its data section), a token shard (.bin) or a text file; default: the "
      "checkpoint's own data config (validation stream)")(
      "batches", po::value<int>(&options.batches)->default_value(options.batches), "evaluation batches")(
      "json", po::value<std::string>(&json_path), "write everything as JSON to this file")(
      "report", po::value<std::string>(&report_path), "write a self-contained HTML report to this file")(
      "compare", po::value<std::string>(&options.compare), "a second checkpoint: routing stability and metric changes")(
      "ep", po::value<int64_t>(&options.ep),
      "predict for N expert-parallel ranks: the slots each would compute and the slowdown against a balanced step "
      "(N must divide the number of experts)")("checkpoint", po::value<std::string>(&checkpoint)->required(),
                                               "the checkpoint to diagnose");
  po::positional_options_description positional;
  positional.add("checkpoint", 1);
  po::variables_map vm;
  if (auto status = tools::parse_flags(argc, argv, "moe-diagnose", opts, vm, &positional)) return *status;
  if (vm.count("ep") && options.ep < 2) {
    std::cerr << "moe-diagnose: --ep must be 2 or more (the number of expert-parallel ranks to predict for), got "
              << options.ep << "\n";
    return 2;
  }
  try {
    const diagnose::Result result = diagnose::run(checkpoint, options);
    diagnose::print_table(result, std::cout);
    // Rendered in memory, then written with every write checked (the file and the system's
    // reason on failure: an unchecked final flush could leave a truncated report unnoticed).
    if (!json_path.empty()) {
      std::ostringstream out;
      diagnose::write_json(result, out);
      fileio::write_file(json_path, out.str());
      std::cout << "wrote " << json_path << "\n";
    }
    if (!report_path.empty()) {
      std::ostringstream out;
      diagnose::write_html(result, out);
      fileio::write_file(report_path, out.str());
      std::cout << "wrote " << report_path << "\n";
    }
    return diagnose::exit_status(result);
  } catch (const std::exception& e) {
    std::cerr << "moe-diagnose: " << e.what() << "\n";
    return 2;
  }
}
