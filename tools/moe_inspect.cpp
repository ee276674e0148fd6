// moe-inspect: prints a checkpoint's summary: what it is, step, parameter count, the expert
// load per layer at the last log step, the tensors grouped by name (or each with --tensors),
// and the config. With --seal it checks a checkpoint edited on purpose (h5py) against its own
// config and writes it with a fresh header hash and checksum, so the other tools accept it.
//
//   moe-inspect CHECKPOINT [--tensors | --no-tensors] [--no-config]
//   moe-inspect --seal EDITED (--out SEALED | --in-place)
//
// Exit status: 0; 2 for a bad flag, a file that is not a complete checkpoint, or an edited file
// that sealing refuses (nothing is written then).
#include <boost/program_options.hpp>
#include <iostream>

#include "tools/cli.h"
#include "tools/lib/assemble/seal.h"
#include "tools/lib/inspect/inspect.h"

namespace po = boost::program_options;

namespace {

int seal(const std::string& path, const std::string& out) {
  try {
    const assemble::SealResult r = assemble::seal_checkpoint(path, out);
    std::cout << path << ": " << r.tensors << " tensors checked against its config: every one present, of its shape, "
              << "float32 and finite\n";
    if (r.found.header && r.found.checksum)
      std::cout << "already sealed (its header hash and checksum match its contents): "
                << (r.wrote ? "copied byte for byte to " + out : "left as it was") << "\n";
    else
      std::cout << "sealed " << out << ": header hash and checksum rewritten\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "moe-inspect: refusing to seal: " << e.what() << "; nothing was written\n";
    return 2;
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string path, out;
  po::options_description opts("moe-inspect: summarize a moe-train checkpoint, or seal one edited on purpose");
  opts.add_options()("help,h", "show this help")("no-config", "do not print the config")(
      "tensors", "list every tensor, not the groups")("no-tensors", "do not list the tensors")(
      "seal", "check a checkpoint edited with h5py against its config, then rewrite its header hash and checksum")(
      "out", po::value<std::string>(&out), "with --seal: write the sealed checkpoint here (the edited file stays as it is)")(
      "in-place", "with --seal: replace the edited file by the sealed one")(
      "checkpoint", po::value<std::string>(&path)->required(), "the .h5 checkpoint");
  po::positional_options_description positional;
  positional.add("checkpoint", 1);
  po::variables_map vm;
  if (auto status = tools::parse_flags(argc, argv, "moe-inspect", opts, vm, &positional)) return *status;
  if (vm.count("seal")) {
    if (vm.count("out") == vm.count("in-place")) {
      std::cerr << "moe-inspect: --seal needs either --out SEALED.h5 or --in-place (where the sealed file goes)\n";
      return 2;
    }
    return seal(path, vm.count("in-place") ? path : out);
  }
  if (vm.count("out") || vm.count("in-place")) {
    std::cerr << "moe-inspect: --out and --in-place go with --seal\n";
    return 2;
  }
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
