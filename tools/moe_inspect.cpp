// moe-inspect: prints a checkpoint's summary: what it is, step, parameter count, the expert
// load per layer at the last log step, the tensors grouped by name (or each with --tensors),
// and the config.
//
//   moe-inspect CHECKPOINT [--tensors | --no-tensors] [--no-config]
//
// Exit status: 0, or 2 for a bad flag or a file that is not a complete checkpoint.
#include <boost/program_options.hpp>
#include <iostream>

#include "tools/cli.h"
#include "tools/lib/inspect/inspect.h"

namespace po = boost::program_options;

int main(int argc, char** argv) {
  std::string path;
  po::options_description opts("moe-inspect: summarize a moe-train checkpoint");
  opts.add_options()("help,h", "show this help")("no-config", "do not print the config")(
      "tensors", "list every tensor, not the groups")("no-tensors", "do not list the tensors")("checkpoint", po::value<std::string>(&path)->required(),
                                               "the .h5 checkpoint");
  po::positional_options_description positional;
  positional.add("checkpoint", 1);
  po::variables_map vm;
  if (auto status = tools::parse_flags(argc, argv, "moe-inspect", opts, vm, &positional)) return *status;
  try {
    inspect::Options options;
    options.config = !vm.count("no-config");
    options.tensors = vm.count("no-tensors") ? inspect::TensorListing::none
                      : vm.count("tensors")  ? inspect::TensorListing::every
                                             : inspect::TensorListing::grouped;
    inspect::describe(ckpt::read_checkpoint(path), path, std::cout, options);
  } catch (const std::exception& e) {
    std::cerr << "moe-inspect: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
