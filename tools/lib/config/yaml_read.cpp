// The config's readers of one YAML value, shared by run_config.cpp and schedule.cpp. Contract
// in yaml_read.h.
#include "tools/lib/config/yaml_read.h"

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cmath>
#include <cstdlib>

#include "tools/lib/config/run_config.h"
#include "tools/lib/config/text.h"

namespace runconfig::detail {

void fail(const std::string& at, const std::string& key, const std::string& what, const std::string& allowed) {
  throw ConfigError(error_message(at, key, what, allowed));
}

std::string describe(const YAML::Node& n) {
  if (!n || n.IsNull()) return "nothing";
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a map";
  return "'" + n.Scalar() + "'";
}

double read_number(const YAML::Node& n, const std::string& at, const std::string& key, const std::string& expected,
                   const std::string& allowed) {
  const std::string text = n && n.IsScalar() ? n.Scalar() : "";
  char* end = nullptr;
  const double v = !text.empty() ? std::strtod(text.c_str(), &end) : 0.0;
  if (text.empty() || *end != '\0' || std::isspace(static_cast<unsigned char>(text[0])))
    fail(at, key, "expected " + expected + ", got " + describe(n), allowed);
  if (!std::isfinite(v)) fail(at, key, "expected a finite number, got " + describe(n), allowed);
  return v;
}

std::int64_t read_integer(const YAML::Node& n, const std::string& at, const std::string& key) {
  std::int64_t v = 0;
  if (!n || !n.IsScalar() || !text::parse_int64(n.Scalar(), &v))
    fail(at, key, "expected an integer, got " + describe(n));
  return v;
}

}  // namespace runconfig::detail
