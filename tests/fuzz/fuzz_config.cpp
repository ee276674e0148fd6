// libFuzzer target: the YAML run-config loader must answer any text with a config or a
// ConfigError, never a crash, a hang or another exception type.
#include <cstddef>
#include <cstdint>
#include <string>

#include "tools/lib/config/run_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const runconfig::RunConfig cfg = runconfig::parse_run_config(text, "fuzz.yaml");
    // What parses must write back to an equal config.
    if (runconfig::parse_run_config(runconfig::to_yaml(cfg), "roundtrip.yaml") != cfg) __builtin_trap();
  } catch (const runconfig::ConfigError&) {
  }
  return 0;
}
