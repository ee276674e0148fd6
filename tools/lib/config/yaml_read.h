// The config's readers of one YAML value, shared by run_config.cpp and schedule.cpp so that a
// number inside a schedule map is read, and refused, exactly like every other number of the
// config. Internal to the config library.
#pragma once
#include <cstdint>
#include <string>

namespace YAML {
class Node;
}  // namespace YAML

namespace runconfig::detail {

// Throws ConfigError(error_message(at, key, what, allowed)).
[[noreturn]] void fail(const std::string& at, const std::string& key, const std::string& what,
                       const std::string& allowed = "");

std::string describe(const YAML::Node& n);  // for messages: nothing, a list, a map or 'TEXT'

// A finite number, else ConfigError `AT: KEY: expected EXPECTED, got ... (allowed: ALLOWED)`.
double read_number(const YAML::Node& n, const std::string& at, const std::string& key,
                   const std::string& expected = "a number", const std::string& allowed = "");
// An integer that fits in 64 bits, else ConfigError `AT: KEY: expected an integer, got ...`.
std::int64_t read_integer(const YAML::Node& n, const std::string& at, const std::string& key);

}  // namespace runconfig::detail
