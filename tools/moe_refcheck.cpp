// moe-refcheck: checks the engine against PyTorch reference files (tools/torch_reference.py).
//
//   moe-refcheck REF.h5 [REF.h5 ...] [--verbose] [--bf16] [--loss-tol X] [--grad-tol X] [--step-tol X]
//
// --bf16 runs the engine with bf16 activations (precision: bf16) against the same float64
// reference, with the bf16 tolerances (refcheck::Tolerances::bf16) unless given.
//
// Exit status: 0 when every file is within tolerance, 1 when any comparison is beyond it,
// 2 for a bad flag or a file that is not a valid reference.
#include <boost/program_options.hpp>
#include <iostream>

#include "tools/cli.h"
#include "tools/lib/refcheck/refcheck.h"

namespace po = boost::program_options;

int main(int argc, char** argv) {
  std::vector<std::string> files;
  refcheck::Tolerances tol;
  po::options_description opts(
      "moe-refcheck: compare the engine with PyTorch reference files (layout: tests/data/reference/README.md)");
  opts.add_options()("help,h", "show this help")("verbose,v", "print every comparison, not only failures")(
      "bf16", "run the engine with bf16 activations; default tolerances become the bf16 ones")(
      "loss-tol", po::value<double>(&tol.loss)->default_value(tol.loss), "relative tolerance of the loss terms")(
      "logits-tol", po::value<double>(&tol.logits)->default_value(tol.logits), "tolerance of the logits")(
      "grad-tol", po::value<double>(&tol.grads)->default_value(tol.grads), "tolerance of each gradient")(
      "step-tol", po::value<double>(&tol.steps)->default_value(tol.steps), "tolerance of each step's loss")(
      "file", po::value<std::vector<std::string>>(&files)->required(), "reference files");
  po::positional_options_description positional;
  positional.add("file", -1);
  po::variables_map vm;
  if (auto status = tools::parse_flags(argc, argv, "moe-refcheck", opts, vm, &positional)) return *status;
  const bool bf16 = vm.count("bf16") > 0;
  if (bf16) {
    const refcheck::Tolerances loose = refcheck::Tolerances::bf16();
    if (vm["loss-tol"].defaulted()) tol.loss = loose.loss;
    if (vm["logits-tol"].defaulted()) tol.logits = loose.logits;
    if (vm["grad-tol"].defaulted()) tol.grads = loose.grads;
    if (vm["step-tol"].defaulted()) tol.steps = loose.steps;
  }
  for (double t : {tol.loss, tol.logits, tol.grads, tol.steps})
    if (!(t > 0)) {
      std::cerr << "moe-refcheck: tolerances must be > 0\n";
      return 2;
    }
  int status = 0;
  for (const std::string& file : files) {
    try {
      const refcheck::Report report = refcheck::check_reference(file, tol, bf16);
      refcheck::print_report(report, std::cout, vm.count("verbose") > 0);
      if (!report.ok()) status = std::max(status, 1);
    } catch (const std::exception& e) {
      std::cerr << "moe-refcheck: " << e.what() << "\n";
      status = 2;
    }
  }
  return status;
}
