// Shared flag handling for the command-line programs: parse, print --help, and turn a bad flag
// into a message naming it and exit status 2.
#pragma once
#include <boost/program_options.hpp>
#include <iostream>
#include <optional>
#include <string>

namespace tools {

// Returns the parsed flags, or an exit status when the program should stop (0 after --help,
// 2 after a bad flag). The options must include "help,h".
inline std::optional<int> parse_flags(int argc, char** argv, const char* program,
                                      const boost::program_options::options_description& opts,
                                      boost::program_options::variables_map& vm,
                                      const boost::program_options::positional_options_description* positional = nullptr) {
  namespace po = boost::program_options;
  try {
    po::command_line_parser parser(argc, argv);
    parser.options(opts);
    if (positional) parser.positional(*positional);
    po::store(parser.run(), vm);
    if (vm.count("help")) {  // before notify(): --help works without the required flags
      std::cout << opts;
      return 0;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << program << ": " << e.what() << "\n" << opts;
    return 2;
  }
  return std::nullopt;
}

}  // namespace tools
