// The run file's YAML text: one document, overrides as fragments. Contract in yaml_document.h.
#include "tools/lib/config/yaml_document.h"

#include <yaml-cpp/depthguard.h>

#include <algorithm>
#include <cctype>
#include <sstream>
#include <vector>

#include "tools/lib/config/run_config.h"
#include "tools/lib/config/yaml_read.h"

namespace runconfig::detail {
namespace {

// Where the text's documents start, from the document markers ("---" or "...") at the start of
// a line: the first line with content (-1: none, only comments and markers), and the marker
// line of a second document with content (-1: none). YAML::Load ignores a second document
// silently, and yaml-cpp 0.7's LoadAll, which would find it, loops forever on some malformed
// input (found by fuzzing), so the markers are read here.
struct DocumentLines {
  int first_content = -1, second_document = -1;
};

DocumentLines document_lines(const std::string& text) {
  DocumentLines out;
  int line_no = 0, marker_line = -1;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line); ++line_no) {
    const bool marker = (line.rfind("---", 0) == 0 || line.rfind("...", 0) == 0) &&
                        (line.size() == 3 || std::isspace(static_cast<unsigned char>(line[3])));
    const std::string rest = marker ? line.substr(3) : line;
    const size_t start = rest.find_first_not_of(" \t\r");
    const bool content = start != std::string::npos && rest[start] != '#' &&
                         !(out.first_content < 0 && rest[start] == '%');  // directives precede the document
    if (marker && out.first_content >= 0) marker_line = line_no;
    if (!content) continue;
    if (out.first_content < 0) {
      out.first_content = line_no;
    } else if (marker_line >= 0) {
      out.second_document = marker_line;
      break;
    }
  }
  return out;
}

}  // namespace

YAML::Node load_one_document(const std::string& text, const std::string& where, bool with_mark) {
  auto at = [&](int line, int column) {
    return with_mark ? where + ":" + std::to_string(line + 1) + ":" + std::to_string(column + 1) : where;
  };
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::DeepRecursion& e) {
    throw ConfigError(at(e.mark.line, e.mark.column) + ": YAML nested more than " + std::to_string(e.depth() - 1) +
                      " levels deep (a run config nests 3)");
  } catch (const YAML::ParserException& e) {
    throw ConfigError(at(e.mark.line, e.mark.column) + ": YAML syntax error: " + e.msg);
  }
  const DocumentLines lines = document_lines(text);
  if (lines.second_document >= 0)
    throw ConfigError(at(lines.second_document, 0) +
                      ": a second YAML document (after '---' or '...'); a config holds one document, and a second "
                      "would be ignored");
  if ((!root || root.IsNull()) && lines.first_content >= 0)
    throw ConfigError(at(lines.first_content, 0) + ": YAML syntax error: nothing could be read from this text");
  return root;
}

YAML::Node override_node(const std::string& text, const std::string& at) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) fail(at, text, "an override must look like KEY.PATH=VALUE");
  const std::string path = text.substr(0, eq);
  std::vector<std::string> parts;
  std::stringstream ss(path);
  for (std::string part; std::getline(ss, part, '.');) parts.push_back(part);
  if (path.back() == '.' || std::count(parts.begin(), parts.end(), std::string())) {
    fail(at, path, "empty part in the key path");
  }
  YAML::Node value;
  try {
    value = load_one_document(text.substr(eq + 1), "", false);
  } catch (const ConfigError& e) {
    std::string why = e.what() + 2;  // without the empty location's ": "
    const std::string syntax = "YAML syntax error: ";
    if (why.rfind(syntax, 0) == 0) why = why.substr(syntax.size());
    fail(at, path, "the value is not valid YAML: " + why);
  }
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    YAML::Node map(YAML::NodeType::Map);
    map[*it] = value;
    value = map;
  }
  return value;
}

}  // namespace runconfig::detail
