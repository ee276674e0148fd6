// moe-catalog: the routers and balance losses the engine knows (models/routers/routers.def,
// models/balance/losses.def) as the Markdown tables of configs/README.md.
//
//   moe-catalog                 print the tables
//   moe-catalog --check FILE    exit 1 when FILE's generated section is not what the catalog gives
//   moe-catalog --write FILE    rewrite FILE's generated section
#include <boost/program_options.hpp>
#include <fstream>
#include <iostream>
#include <sstream>

#include "models/catalog.h"
#include "tools/cli.h"

namespace po = boost::program_options;

int main(int argc, char** argv) {
  std::string check, write;
  po::options_description opts("moe-catalog: the router and balance-loss tables of configs/README.md");
  opts.add_options()("help,h", "show this help")("check", po::value<std::string>(&check),
                                                 "exit 1 when this file's generated tables are stale")(
      "write", po::value<std::string>(&write), "rewrite this file's generated tables");
  po::variables_map vm;
  if (auto status = tools::parse_flags(argc, argv, "moe-catalog", opts, vm)) return *status;
  if (check.empty() && write.empty()) {
    std::cout << moe::catalog_markdown();
    return 0;
  }
  const std::string path = check.empty() ? write : check;
  try {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot read it");
    std::stringstream text;
    text << in.rdbuf();
    const std::string updated = moe::with_catalog_markdown(text.str());
    if (!check.empty()) {
      if (updated == text.str()) return 0;
      std::cerr << "moe-catalog: " << path << ": the router and loss tables differ from the catalog; run "
                << "build/bin/moe-catalog --write " << path << "\n";
      return 1;
    }
    std::ofstream out(path);
    if (!(out << updated) || !out.flush()) throw std::runtime_error("cannot write it");
  } catch (const std::exception& e) {
    std::cerr << "moe-catalog: " << path << ": " << e.what() << "\n";
    return 2;
  }
  return 0;
}
