// The run file's YAML text: exactly one document (a second one, or nesting past yaml-cpp's guard,
// refused with its place), and a `KEY.PATH=VALUE` override turned into a document fragment.
// Internal to the config library (run_config.cpp).
#pragma once
#include <string>

#include <yaml-cpp/yaml.h>

namespace runconfig::detail {

// The one YAML document of `text`; a second one is refused, and nesting deep enough to trip
// yaml-cpp's recursion guard is named as such (its own message is "bad file"). `where`
// prefixes the message: "FILE" (with line:column when with_mark) or "override 'K=V'".
YAML::Node load_one_document(const std::string& text, const std::string& where, bool with_mark);

// Turns `a.b.c=value` into the map {a: {b: {c: value}}} so it parses like a file fragment; `at`
// names the override in messages.
YAML::Node override_node(const std::string& text, const std::string& at);

}  // namespace runconfig::detail
