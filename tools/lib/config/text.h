// Text helpers of the config library: lists, doubles that read back exactly, the nearest
// allowed key for "did you mean", integers without silent overflow, and the UTF-8 check that
// keeps strings safe for to_yaml and the filesystem.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace runconfig::text {

std::string join(const std::vector<std::string>& items);  // "a, b, c"
// Shortest decimal form that reads back to the same double, always looking like a float.
std::string format_double(double v);
size_t edit_distance(const std::string& a, const std::string& b);
// The allowed key nearest to `key` (a typo's likely intent), or "" when none is close.
std::string closest_key(const std::string& key, const std::vector<std::string>& allowed);
bool parse_int64(const std::string& s, std::int64_t* out);  // false on junk or overflow
bool clean_utf8(const std::string& s);                      // well-formed UTF-8, no NUL bytes

}  // namespace runconfig::text
